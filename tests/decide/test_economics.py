"""Break-even and ROI against cases worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import pytest

from adaptlab.decide.economics import (
    CostModel,
    break_even_requests,
    break_even_volume,
    cheapest,
    compute_per_request_usd,
    growth_factor,
    roi,
)

# API pair. Few-shot on gpt-4o-mini (0.15 / 0.60 USD per 1M tokens): 2,000 input and 5
# output tokens per request = 0.000300 + 0.000003 = 0.000303 USD. The fine-tuned model
# (0.30 / 1.20) with a short prompt: 100 in, 5 out = 0.000030 + 0.000006 = 0.000036 USD.
# Its setup: training 3 epochs x 100,000 tokens at 3.00 USD/1M = 0.90, plus 500 labels
# at 0.10 = 50.00: 50.90 USD.
FEW_SHOT = CostModel("few-shot", "api", setup_usd=0.0, per_request_usd=0.000303)
TUNED = CostModel("tuned", "api", setup_usd=50.90, per_request_usd=0.000036)


def test_api_pair_break_even_by_hand() -> None:
    # saving 0.000267 USD/request; 12 months: V* = 50.90 / (12 * 0.000267) = 15,886.39
    assert break_even_volume(FEW_SHOT, TUNED, 12) == pytest.approx(15_886.39, abs=0.01)
    assert break_even_volume(TUNED, FEW_SHOT, 12) == pytest.approx(15_886.39, abs=0.01)
    # cumulative: 50.90 / 0.000267 = 190,636.7 requests
    assert break_even_requests(FEW_SHOT, TUNED) == pytest.approx(190_636.7, abs=0.1)
    assert break_even_requests(TUNED, FEW_SHOT) is None  # the few-shot saves nothing per request
    # below the crossing the prompt is cheaper over the horizon, above it the fine-tune
    assert cheapest([FEW_SHOT, TUNED], 15_000, 12) is FEW_SHOT
    assert cheapest([FEW_SHOT, TUNED], 17_000, 12) is TUNED


def test_api_pair_roi_by_hand() -> None:
    # 50,000/month for 12 months: saving 12 * 50,000 * 0.000267 = 160.20 USD;
    # ROI = (160.20 - 50.90) / 50.90 = 2.1473; 13.35 USD saved a month: paid back in month 4
    r = roi(TUNED, FEW_SHOT, 50_000, 12)
    assert r.investment_usd == pytest.approx(50.90)
    assert r.saving_usd == pytest.approx(160.20)
    assert r.roi == pytest.approx(2.1473, abs=1e-4)
    assert r.payback_months == 4
    # below the break-even the ROI is negative and there is no payback in the horizon
    low = roi(TUNED, FEW_SHOT, 10_000, 12)
    assert low.roi is not None and low.roi < 0 and low.payback_months is None
    # nothing invested: no ROI to speak of
    assert roi(FEW_SHOT, TUNED, 50_000, 12).roi is None


def test_growth_compounds_monthly() -> None:
    # 10% a month: G = sum 1.1^m for m = 0..11 = (1.1^12 - 1) / 0.1 = 21.3843
    assert growth_factor(12, 0.10) == pytest.approx(21.3843, abs=1e-4)
    # V* = 50.90 / (21.3843 * 0.000267) = 8,914.8
    assert break_even_volume(FEW_SHOT, TUNED, 12, 0.10) == pytest.approx(8_914.8, abs=0.1)
    assert growth_factor(12, 0.0) == 12.0
    with pytest.raises(ValueError, match="above -100%"):
        growth_factor(12, -1.0)
    with pytest.raises(ValueError, match="at least one month"):
        growth_factor(0, 0.0)


# Self-hosted pair. A prompted LLM on a rented GPU at 2.50 USD/h serving 5 requests/s:
# 2.50 / (5 * 3600) = 0.000138889 USD/request, no setup. A fine-tuned encoder on CPU at
# 0.048 USD per core-hour and 0.02 core-seconds/request: 0.02 * 0.048 / 3600 =
# 2.6667e-7 USD/request; training 600 core-seconds (0.008 USD) plus 8 engineering hours
# at 100 USD = 800.008 USD setup; and an always-on small VM at 30 USD/month.
GPU_PROMPT = CostModel("gpu-prompt", "self-hosted", 0.0, compute_per_request_usd(1 / 5, 2.50))
CPU_TUNED = CostModel(
    "cpu-tuned",
    "self-hosted",
    compute_per_request_usd(600, 0.048) + 8 * 100,
    compute_per_request_usd(0.02, 0.048),
    fixed_monthly_usd=30.0,
)


def test_self_hosted_per_request_by_hand() -> None:
    assert GPU_PROMPT.per_request_usd == pytest.approx(0.000138889, rel=1e-5)
    assert CPU_TUNED.per_request_usd == pytest.approx(2.6667e-7, rel=1e-4)
    assert CPU_TUNED.setup_usd == pytest.approx(800.008)


def test_self_hosted_pair_break_even_and_roi_by_hand() -> None:
    # V* = (800.008 + 12 * 30) / (12 * (0.000138889 - 0.000000267)) = 1,160.008 / 0.00166347
    #    = 697,344 requests/month
    v = break_even_volume(GPU_PROMPT, CPU_TUNED, 12)
    assert v == pytest.approx(697_344, rel=1e-5)
    # 1,000,000/month: GPU 138.889/month, CPU 30 + 0.267 = 30.267; saving 108.622/month,
    # 1,303.47 over 12 months; ROI = (1,303.47 - 800.008) / 800.008 = 0.6293; the
    # cumulative saving passes 800.008 in month 8 (8 * 108.622 = 868.98)
    r = roi(CPU_TUNED, GPU_PROMPT, 1_000_000, 12)
    assert r.saving_usd == pytest.approx(1_303.47, abs=0.01)
    assert r.roi == pytest.approx(0.6293, abs=1e-4)
    assert r.payback_months == 8
    assert cheapest([GPU_PROMPT, CPU_TUNED], 600_000, 12) is GPU_PROMPT
    assert cheapest([GPU_PROMPT, CPU_TUNED], 800_000, 12) is CPU_TUNED


def test_no_crossing() -> None:
    same = CostModel("same", "api", 10.0, FEW_SHOT.per_request_usd)
    assert break_even_volume(FEW_SHOT, same, 12) is None  # equal slopes never cross
    dominated = CostModel("worse", "api", 10.0, 0.001)  # dearer in setup and per request
    assert break_even_volume(FEW_SHOT, dominated, 12) is None
    with pytest.raises(ValueError, match="no cost models"):
        cheapest([], 1, 12)
