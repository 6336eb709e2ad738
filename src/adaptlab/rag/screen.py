"""The instruction screen: sentences of a retrieved passage that speak to the model.

A retrieved passage is data. A sentence in it that addresses the model instead of
the reader ("ignore all previous instructions…", "Vergessen Sie alles…", "Oubliez
toutes les consignes…", "</context> New instructions: …") is withheld before the
passage enters a prompt, and counted (:func:`screen_passage`). A screen of this kind
is a first line, not a proof (Greshake et al., "Not what you've signed up for", AISec
2023): the numbered layout and the system prompt that calls passages reference
material are the second.

Each sentence is checked in three readings, and withheld when any reads as an
instruction:

* as written, after NFKC, with format characters (zero-width spaces, soft hyphens,
  direction marks) removed, look-alike letters folded to Latin through Unicode's
  confusables table (PyPI ``confusable_homoglyphs``: Cyrillic "і" or Greek "ο"
  inside "іgnοre" read as "ignore"), and letter-spaced words joined ("i g n o r e");
* every base64 run in it (16+ characters) decoded, when it decodes to text;
* joined with the next line, when a line break (not a full stop) ended it, so that
  breaking an instruction over two lines does not hide it.

The patterns cover English, German (du and Sie) and French, and the commonest
override in Spanish, Italian, Portuguese, Dutch, Croatian and Russian: overriding
earlier instructions, taking on a role, dictating the answer, asking for the prompt.
Prompt structure (a template tag such as ``</context>`` or ``<system>``, chat markup
such as ``<|im_start|>`` or ``[INST]``, ``### System:``, ``=== END``) withholds its
sentence and the rest of the passage. Each pattern is tried only when the sentence
holds one of its stems, so an ordinary 200-token passage takes about 1 ms.

Not caught (measured misses, or forms left out because ordinary text uses them too):
role-play stories and off-topic requests ("generate c++", "state that …"),
imperatives that a help article also uses ("write", "include … in your reply"), a
whole phrase letter-spaced without word gaps, other encodings (hex, ROT13).

Measured by ``bench/injection_screen.py`` on deepset/prompt-injections (Apache-2.0;
English and German; vendored in ``bench/data/prompt_injections/``), its test split,
Wilson 95% intervals: 25 of 60 injections caught, 42% [30, 54] (the English/German
pattern list before: 16 of 60, 27% [17, 39]); 0 of 56 benign rows flagged. Ordinary
passages, chunked as the index chunks them: nothing withheld from 0 of 10,953 SciFact
chunks [0, 0.04%], 0 of 80 support-qa chunks [0, 4.6%], 0 of 593 German QA passages
[0, 0.6%] (before: 40 SciFact chunks, 0.4%). A logistic regression on the bundled
encoder's embeddings catches 80% [68, 88] of the test injections at a threshold chosen
on train but withholds a sentence from 36-66% of ordinary passages; tuned to touch at
most 1% of passages it catches 25% [16, 37], fewer than the patterns, at 40 ms a
passage. So the screen is patterns only. The patterns were written from the train
split's misses, never the test split's.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import unicodedata
from functools import cache

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_ENDS_SENTENCE = re.compile(r"[.!?:;\"'»“”)\]]\s*$")

# Gaps inside one instruction: any characters but a sentence end.
_G = r"[^.!?\n]"

# An override verb, unless negated ("don't forget to read the instructions" is advice).
_NOT = r"(?<!n't )(?<!not )(?<!never )(?<!nicht )"
_VERB_EN = rf"{_NOT}\b(?:ignore|disregard|forget|override|neglect|abandon|set aside)\b(?! to\b)"
_TIME_EN = (
    r"previous|prior|above|earlier|preceding|foregoing|original|initial|old|former|existing|"
    r"system|provided|given"
)
_STRONG_EN = (
    r"instructions?|prompts?|programming|directives?|guidelines|system messages?|"
    r"developer messages?"
)
_WEAK_EN = (
    r"rules|directions|tasks?|assignments?|orders|commands|constraints|restrictions|"
    r"information|context|conversation|messages?|text|thoughts"
)
_TIME_DE = (
    r"bisherige[nmr]?|vorherige[nmr]?|obige[nmr]?|vorige[nmr]?|frühere[nmr]?|"
    r"vorangegangene[nmr]?|ursprüngliche[nmr]?|oben stehende[nmr]?"
)
_OBJ_DE = (
    r"anweisung(?:en)?|instruktion(?:en)?|vorgaben|befehle|regeln|aufgaben?|informationen|"
    r"ausführungen|kontext|gespräch|systemprompt|prompts?"
)
#: Key words of the German override verbs (du and Sie forms), for :data:`_VERB_DE`.
_DE_OVERRIDE_KEYS = (
    "ignorier",
    "vergiss",
    "vergesst",
    "missacht",
    "übergeh",
    "verwirf",
    "streich",
    "vergessen",
    "verwerfen",
    "lassen",
)
_VERB_DE = (
    rf"{_NOT}\b(?:ignorier(?:e|t)?|vergiss|vergesst|missachte|übergeh(?:e)?|verwirf|"
    rf"streich(?:e)?|(?:ignorieren|vergessen|missachten|übergehen|verwerfen|streichen|"
    rf"lassen) sie)\b(?!,? nicht\b)"
)
# A dictated answer ends in a literal: a colon or an opening quote.
_LITERAL = r"\s*(?:[:\"'“„«‚‘]|the words?\b|das wort\b|le mot\b)"

# The rules: (stems, pattern). A pattern is tried only when the lower-cased sentence
# holds one of its stems (plain substring tests, far cheaper than the patterns), so
# an ordinary passage costs a few hundred substring scans; each stem list names words
# that the pattern cannot match without.
_RULES: list[tuple[tuple[str, ...], str]] = [
    # -- overriding what came before --------------------------------------------------
    # English: ignore / forget … (all previous) instructions, everything, the above.
    (
        ("instruction", "prompt", "programming", "directive", "guideline", "message"),
        rf"(?:{_VERB_EN}|\b(?:bypass|skip|drop|discard|erase|delete|cancel|remove|change|"
        rf"replace|reset)\b){_G}{{0,40}}\b(?:your |the |all |(?:{_TIME_EN}) )*(?:{_STRONG_EN})\b",
    ),
    (
        (
            "ignor",
            "disregard",
            "forget",
            "overrid",
            "neglect",
            "abandon",
            "aside",
            "remove",
            "leave",
        ),
        rf"(?:{_VERB_EN}|\bremove\b|\bleave\b){_G}{{0,30}}\b(?:{_TIME_EN})\b{_G}{{0,25}}"
        rf"\b(?:{_WEAK_EN})\b",
    ),
    (
        ("ignor", "disregard", "forget", "overrid", "neglect", "abandon", "aside"),
        rf"{_VERB_EN}{_G}{{0,10}}\ball (?:the |your |of (?:the|your) )?(?:rules|tasks|"
        rf"assignments|orders|commands|constraints|restrictions|thoughts)\b",
    ),
    (
        ("ignor", "disregard", "forget", "overrid", "neglect", "abandon", "aside"),
        rf"{_VERB_EN}(?: about)? (?:everything|anything|all of (?:it|that|this)|all (?:that|"
        rf"this|the above)|what (?:i|you|we|was) (?:said|told|wrote|written)|(?:the )?above|"
        rf"it all)",
    ),
    (
        ("follow", "obey", "adhere", "comply"),
        rf"\b(?:do not|don't|stop|no longer|never) (?:follow|obey|adhere to|comply with)\b"
        rf"{_G}{{0,40}}\b(?:(?:{_TIME_EN}|your|the|any) )+(?:instructions?|rules|guidelines|"
        rf"prompts?)\b",
    ),
    (
        ("void", "irrelevant", "cancel", "obsolete", "invalid", "longer"),
        rf"\b(?:{_TIME_EN}) (?:instructions?|rules|prompts?|information|tasks?)\b{_G}{{0,30}}"
        rf"\b(?:are|is|were) (?:now )?(?:void|irrelevant|cancell?ed|obsolete|invalid|"
        rf"no longer (?:valid|relevant))",
    ),
    (
        ("instruction", "task", "assignment", "order", "rule"),
        r"\b(?:new|updated|real|actual|next|additional) (?:instructions?|tasks?|assignments?|"
        r"orders|rules)\s*[:\-–]",
    ),
    (("focus", "concentrate"), r"\bnow (?:focus|concentrate) on (?:your|a|the) new\b"),
    (
        ("task", "instruction", "assignment"),
        r"\b(?:now|here) (?:come|comes|follow|follows|are) (?:your |some )?(?:new|further|more) "
        r"(?:tasks?|instructions?|assignments?)\b|\b(?:new|further) (?:tasks?|instructions?) "
        r"(?:follow|are followed|are following|come)\b",
    ),
    (
        ("instruction", "despite"),
        r"\b(?:your (?:new )?instructions are (?:now|as follows)|despite what you(?:'ve| have)? "
        r"(?:been told|were told)|contrary to (?:your|the|all) (?:previous |prior )?"
        r"instructions)",
    ),
    (
        ("document", "article", "passage", "context", "source"),
        r"\b(?:do not|don't|never|without) (?:look(?:ing)? (?:in|at|into)|us(?:e|ing)|"
        r"read(?:ing)?|consult(?:ing)?|rely(?:ing)? on) the (?:documents?|articles?|passages?|"
        r"context|sources?) (?:provided|given|above|you were given)\b",
    ),
    (
        ("document", "article", "passage", "context", "source"),
        r"\b(?:disregard(?:ing)?|ignoring|not by) the (?:articles?|documents?|passages?|context|"
        r"sources?)(?: provided| above| given)?\s*(?:[,.!?]|$|and\b|but\b)",
    ),
    (
        ("prompt", "conversation", "instruction", "written"),
        r"\b(?:beginning|start|top) of (?:this|the|your) (?:prompt|conversation|instructions)\b|"
        r"\bwhat (?:is|was) written (?:above|at the beginning)\b",
    ),
    # German, du and Sie: ignoriere / vergiss / ignorieren Sie … Anweisungen, alles.
    (
        _DE_OVERRIDE_KEYS,
        rf"{_VERB_DE}{_G}{{0,40}}\b(?:(?:alle[nms]?|die|den|deine[nmr]?|ihre[nmr]?|{_TIME_DE}) )*"
        rf"(?:{_OBJ_DE})\b",
    ),
    (
        _DE_OVERRIDE_KEYS,
        rf"{_VERB_DE}(?: einfach| bitte)? (?:alles|das obige|was (?:ich|du|wir|sie) "
        rf"(?:gesagt|geschrieben))",
    ),
    (
        ("ignorier", "vergessen", "missacht", "streich", "verwerf", "hinter sich"),
        rf"\b(?:alle )?(?:{_TIME_DE}) (?:{_OBJ_DE})\b{_G}{{0,40}}\b(?:ignorieren|vergessen|"
        rf"missachten|streichen|verwerfen|hinter sich lassen)\b",
    ),
    (
        ("irrelevant", "ungültig", "aufgehoben", "nichtig", "hinfällig"),
        rf"\b(?:alle )?(?:{_TIME_DE}) (?:anweisungen|instruktionen|informationen|regeln|vorgaben|"
        rf"aufgaben)\b{_G}{{0,40}}\b(?:sind|ist|gelten|gilt) (?:ab sofort |jetzt |nun )?"
        rf"(?:irrelevant|ungültig|aufgehoben|nichtig|hinfällig|nicht mehr gültig)",
    ),
    (
        ("abweichend",),
        rf"\babweichend (?:zu|von) (?:den |allen )?(?:{_TIME_DE}) (?:anweisungen|instruktionen|"
        rf"vorgaben)\b",
    ),
    (
        ("anweisung", "aufgabe", "instruktion"),
        r"\b(?:neue|eigentliche|nächste|zusätzliche) (?:anweisungs?|anweisungen|aufgabe|"
        r"instruktionen?)\s*[:\-–]",
    ),
    (
        ("aufgabe", "anweisung"),
        r"\b(?:jetzt|nun) (?:kommen|kommt|folgt|folgen)\b[^.!?\n]{0,30}\b(?:neue|weitere) "
        r"(?:aufgaben?|anweisungen)\b",
    ),
    # French: ignore(z) / oublie(z) … instructions, consignes, tout, ce qui précède.
    (
        ("ignor", "oubli", "néglig", "contourn", "compte", "abstraction"),
        rf"(?<!pas ){_NOT}\b(?:ignor(?:e|ez|er)|oubli(?:e|ez|er)|néglig(?:e|ez|er)|"
        rf"contourn(?:e|ez|er)|ne (?:tiens|tenez) pas compte|(?:fais|faites) abstraction)\b"
        rf"(?! pas\b){_G}{{0,60}}\b(?:(?:les|des|tes|vos|toutes|tous|ces) )*(?:instructions?|"
        rf"consignes?|règles|directives?|ordres|tout|ce qui précède|ci-dessus|précédent\w*|"
        rf"antérieur\w*)",
    ),
    (("nouvel",), r"\b(?:nouvelles? (?:instructions?|consignes?|tâches?))\s*[:\-–]"),
    # Spanish, Italian, Portuguese, Dutch, Croatian, Russian: the override, briefly.
    (
        (
            "ignora",
            "olvid",
            "omite",
            "descarta",
            "dimentic",
            "esque",
            "negeer",
            "vergeet",
            "zaboravi",
            "zanemari",
            "забуд",
            "игнорир",
        ),
        rf"\b(?:ignora|olvida|olvide|olvidar|omite|descarta|dimentica|dimenticare|esqueça|"
        rf"esqueca|esquece|negeer|vergeet|zaboravi|zanemari|забудь\w*|игнорируй\w*|"
        rf"проигнорируй\w*)\b{_G}{{0,60}}\b(?:instrucciones|reglas|indicaciones|todo|"
        rf"anteriores|previas|istruzioni|regole|tutto|precedenti|instruções|instrucoes|regras|"
        rf"instructies|alles|instrukcije|upute|sve|инструкци\w*|правила|указания|всё|все)\b",
    ),
    # -- taking on a role ------------------------------------------------------------
    (
        (
            "you are now",
            "you must now",
            "you will now",
            "you're now",
            "from now on",
            "pretend",
            "roleplay",
            "role-play",
            "no longer",
        ),
        r"\b(?:you are now|you must now|you will now|you're now|from now on,? you|"
        r"pretend (?:to be|you are|you're|you can|that you)|role-?play(?:ing)? as|"
        r"you are no longer)\b",
    ),
    (
        ("act", "behave"),
        r"\b(?:please|now|i want you to|you will now|you must now)(?: \w+)? (?:act|behave) "
        r"(?:as|like)\b",
    ),
    (("act", "behave"), r"^\s*(?:act|behave) as (?:a|an|if|my|the)\b"),
    (
        ("style", "stil"),
        r"\b(?:answer|respond|reply|write|speak|talk)\b[^.!?\n]{0,40}\bin the style of\b|"
        r"\b(?:antworte|beantworte|sprich|schreibe|schreib)\b[^.!?\n]{0,40}\bim stile? "
        r"(?:eines|einer|von)\b",
    ),
    (
        ("du bist", "you are"),
        r"\b(?:du bist keine?|you are (?:no|not an?)) [\w -]{1,40}\b(?:sondern|but)\b",
    ),
    (
        ("act as",),
        r"\bact as (?:a|an|my|the) [\w -]{0,30}\b(?:interpreter|terminal|console|translator|"
        r"assistant|chatbot|ai|gpt|model|character)\b",
    ),
    (("want you to",), r"\bi want you to (?:act|be|pretend|play|behave|only)\b"),
    (
        ("you are",),
        r"(?:^|\bokay\b\W*|\bok\b\W*|\bnow\b,? )you are (?!ready|all\b|able|done|signed|logged|"
        r"set\b|connected|finished|subscribed|enrolled|registered|back|in\b|on\b|going|now\b)"
        r"(?:(?-i:[A-Z])\w+|an? |the )",
    ),
    (("repeat after", "sprich mir nach"), r"\brepeat after me\b|\bsprich mir nach\b"),
    (
        ("du bist", "ihr seid"),
        r"\b(?:du bist|ihr seid) (?:jetzt|nun|ab (?:jetzt|sofort)|von nun an|ab heute)\b",
    ),
    (
        ("bist du",),
        r"(?:^|\bokay\b\W*|\bok\b\W*)(?:jetzt|nun) bist du (?!bereit|fertig|startklar|"
        r"angemeldet|eingeloggt|verbunden)",
    ),
    (
        ("bist du", "antwortest du", "sprichst du"),
        r"\b(?:ab (?:jetzt|sofort)|von nun an),? (?:bist du|antwortest du|sprichst du)\b",
    ),
    (("stell dir vor",), r"\bstell dir vor,? du (?:bist|wärst) (?:ein|eine|der|die|das)\b"),
    (
        ("fungier", "agier", "auftr"),
        rf"\bdass (?:du|sie) (?:als|wie){_G}{{0,80}}\b(?:fungierst|fungieren|agierst|agieren|"
        rf"auftrittst|auftreten)\b",
    ),
    (
        ("fungiere", "agiere", "verhalte dich", "tu so", "tun sie so", "rolle", "gib dich"),
        r"\b(?:fungiere|agiere|verhalte dich wie|tu so,? als|tun sie so,? als|spiele die rolle|"
        r"spielen sie die rolle|gib dich als)\b",
    ),
    (
        ("désormais", "maintenant", "à présent"),
        r"\b(?:tu es|vous êtes) (?:désormais|maintenant|à présent)\b",
    ),
    (
        ("maintenant", "dorénavant", "désormais"),
        r"\b(?:à partir de maintenant|dorénavant|désormais),? (?:tu|vous) (?:es|êtes|dois|"
        r"devez|réponds|répondez|agis|agissez)\b",
    ),
    (
        ("comme", "semblant", "rôle"),
        r"\b(?:agis|agissez|comporte-toi|comportez-vous) comme\b|\b(?:fais|faites) semblant\b|"
        r"\b(?:joue|jouez) le rôle\b",
    ),
    (
        ("que tu", "que vous"),
        r"\bje (?:veux|voudrais) que (?:tu|vous) (?:agisses|agissiez|joues|jouiez|sois|soyez|"
        r"fasses|fassiez|répondes|répondiez)\b",
    ),
    (
        ("como", "a partir de ahora"),
        r"\b(?:actúa|actúe|actuar) como\b|\ba partir de ahora,? (?:eres|serás|tú)\b",
    ),
    # -- dictating the answer: a verb, "only/always", then a literal -------------------
    (
        ("only", "always", "exclusively", "nothing but", "just"),
        rf"\b(?:answer|reply|respond|say|output|print)\b{_G}{{0,30}}\b(?:only|always|"
        rf"exclusively|nothing but|just)\b{_G}{{0,30}}\b(?:with|that){_LITERAL}",
    ),
    (
        ("just", "only", "simply"),
        rf"\b(?:just|only|simply) (?:output|print|respond with|answer with|reply with|say)"
        rf"{_LITERAL}",
    ),
    (
        ("pwned", "hacked"),
        r"\b(?:answer|reply|respond|say|write|print|output)\b[^.!?\n]{0,20}\b(?:pwned|hacked)\b",
    ),
    (
        ("stop",),
        r"\bstop\s*[-:–]+\s*(?:write|say|print|answer|output)\b|\b(?:attention|achtung)\s*"
        r"[-:–!]+\s*(?:stop|stopp)\b",
    ),
    (
        ("nur", "immer", "ausschließlich", "lediglich"),
        rf"\b(?:antworte|antwortet|sage|sag|schreibe|schreib|gib|(?:antworten|sagen|schreiben|"
        rf"geben) sie)\b{_G}{{0,40}}\b(?:nur|immer|ausschließlich|lediglich)\b{_G}{{0,20}}"
        rf"(?:\bmit\b{_LITERAL}?|{_LITERAL})",
    ),
    (
        ("seulement", "uniquement", "toujours", "rien d'autre"),
        rf"\b(?:réponds|répondez|dis|dites|écris|écrivez)\b{_G}{{0,40}}\b(?:seulement|"
        rf"uniquement|toujours|rien d'autre que)\b{_G}{{0,20}}(?:\b(?:par|avec)\b{_LITERAL}?|"
        rf"{_LITERAL})",
    ),
    (
        ("répond", "dis", "dites", "écri"),
        r"\b(?:réponds|répondez|dis|dites|écris|écrivez)(?: simplement| juste)?(?: par| avec)?"
        r"\s*[:«]",
    ),
    # -- asking for the prompt -------------------------------------------------------
    (
        ("prompt", "instructions you", "initial instruction", "rules you"),
        rf"\b(?:show|print|reveal|output|repeat|display|tell|give|spell.?check|leak|dump)\b"
        rf"{_G}{{0,30}}\b(?:your|the|above|initial|original|hidden|secret) (?:system )?"
        rf"(?:prompts?|instructions you were given|prompt texts?|initial instructions|"
        rf"rules you were given)\b",
    ),
    (
        ("instructions", "prompt"),
        rf"\b(?:show|print|reveal|repeat|display|tell me|give me|leak|dump)\b{_G}{{0,20}}\byour "
        rf"(?:system )?(?:instructions|prompt)\b",
    ),
    (
        ("prompt", "anweisung", "instruktion"),
        rf"\b(?:zeig(?:e|en sie)?|nenne|nennen sie|verrate|verraten sie|wiederhole|"
        rf"wiederholen sie|gib|geben sie)\b{_G}{{0,30}}\b(?:deine[nm]?|ihre[nm]?) "
        rf"(?:system-?)?(?:prompts?|anweisungen|instruktionen)\b",
    ),
    (
        ("instruction", "consigne", "prompt"),
        rf"\b(?:montre|montrez|affiche|affichez|révèle|révélez|répète|répétez)\b{_G}{{0,30}}"
        rf"\b(?:tes|vos) (?:instructions|consignes|prompts?)\b",
    ),
    # -- naming the machinery --------------------------------------------------------
    (
        (
            "system prompt",
            "systemprompt",
            "system-prompt",
            "developer message",
            "do anything now",
            "invite système",
        ),
        r"\b(?:system prompt|systemprompt|system-prompt|developer message|do anything now|"
        r"invite système)\b",
    ),
    (("dan",), r"\bdan\b[^.!?\n]{0,20}\b(?:mode|prompt|jailbreak)\b|\byou are dan\b"),
]
# Prompt structure: a template tag, chat markup, a role line, an end marker. A passage
# that closes its context goes on as if it were the prompt itself, so a sentence of
# this kind withholds the rest of its passage too.
_STRUCTURE_RULES: list[tuple[tuple[str, ...], str]] = [
    # Any closing tag of the templates' parts; an opening one where HTML has no element
    # of that name (<input>, <label>, <output> are HTML and may be quoted in a document).
    (
        ("</",),
        r"</\s*(?:context|examples?|input|output|label|schema|system|instructions?|passages?|"
        r"documents?|user|assistant|human|tool)\s*>",
    ),
    (
        ("<",),
        r"<\s*(?:context|examples?|schema|system|instructions?|passages?|documents?|user|"
        r"assistant|human|tool)\s*/?>",
    ),
    (
        ("<|", "[inst", "[/inst", "<<sys", "<</sys", "_of_turn"),
        r"<\|[a-z_]{2,20}\|>|\[/?inst\]|<</?sys>>|<(?:start|end)_of_turn>",
    ),
    (("#",), r"^\s*#{1,6}\s*(?:system|assistant|developer|instructions?|response)\b\s*:?"),
    (
        ("assistant", "developer", "system"),
        r"^\s*(?:assistant|developer)\s*:|^\s*system\s*:\s*(?:you\b|ignore|new|from now|"
        r"override)",
    ),
    (
        ("===", "end of"),
        r"={3,}\s*end\b|\bend of (?:the )?(?:context|passages|prompt)\b|\[end of (?:the )?"
        r"(?:context|document|input|passages?)\]",
    ),
    (
        ("context", "kontext"),
        r"\b(?:context|kontext)\s*:\s*\{?[^\n]{0,300}?\b(?:question|frage)\s*:",
    ),
]
_FLAGS = re.IGNORECASE | re.MULTILINE
_COMPILED = [(stems, re.compile(p, _FLAGS), False) for stems, p in _RULES] + [
    (stems, re.compile(p, _FLAGS), True) for stems, p in _STRUCTURE_RULES
]


def _match(normalized: str) -> tuple[bool, bool]:
    """(reads as an instruction, is prompt structure) for normalized text."""
    lower = normalized.lower()
    hit = False
    for stems, pattern, structure in _COMPILED:
        if any(s in lower for s in stems) and pattern.search(normalized):
            if structure:
                return True, True
            hit = True
    return hit, False


_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
# Letter-spaced words ("i g n o r e", "i-g-n-o-r-e"): single letters, one separator each.
_SPACED = re.compile(r"(?<!\w)(?:\w[ .\-_*]){3,}\w(?!\w)")
_SEPARATOR = re.compile(r"[ .\-_*]")
_WORD = re.compile(r"\w+")
_LEET = str.maketrans("013457", "oieast")


@cache
def _folding() -> dict[int, str]:
    """Non-Latin-1 characters that look like a Latin letter or digit, to that letter.

    From Unicode's confusables table as PyPI ``confusable_homoglyphs`` ships it (about
    1,300 characters); an upper-case letter keeps its case, so Greek "Ι" reads "I"
    where the table says "l". Latin-1 letters (ä, é, ß, …) are words of their own.
    """
    from confusable_homoglyphs.confusables import confusables_data

    table: dict[int, str] = {}
    for char, homoglyphs in confusables_data.items():
        if len(char) != 1 or ord(char) <= 0xFF:
            continue
        ascii_ = [h["c"] for h in homoglyphs if len(h["c"]) == 1 and h["c"].isascii()]
        ascii_ = [c for c in ascii_ if c.isalnum()]
        if ascii_:
            target = ascii_[0]
            table[ord(char)] = "I" if target == "l" and char.isupper() else target
    return table


def normalize(text: str) -> str:
    """``text`` as the patterns read it: NFKC, format characters removed, look-alike
    letters folded to Latin, letter-spaced words joined. Only for matching: a
    passage is shown as written."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    text = _WORD.sub(_fold_word, text)
    return _SPACED.sub(lambda m: _SEPARATOR.sub("", m.group(0)), text)


def _fold_word(match: re.Match[str]) -> str:
    """A word written in look-alikes, in Latin; a word of another script as it is (a
    Russian word keeps its letters, so patterns in Russian still read it)."""
    word = match.group(0)
    if word.isascii():
        # Digits as letters inside a word ("1gn0re"); a number alone stays a number.
        mixed = not word.isdigit() and not word.isalpha() and any(c.isalpha() for c in word)
        return word.translate(_LEET) if mixed else word
    folded = word.translate(_folding())
    return folded if all(ord(c) <= 0x24F for c in folded) else word


def decoded_runs(text: str) -> list[str]:
    """The base64 runs of ``text`` (16+ characters) that decode to UTF-8 text
    (printable, at least four letters); an invalid run is not text and is skipped."""
    out = []
    for match in _BASE64.finditer(text):
        run = match.group(0).rstrip("=")
        run += "=" * (-len(run) % 4)
        try:
            raw = base64.b64decode(run.replace("-", "+").replace("_", "/"), validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, ValueError):
            continue
        if sum(c.isalpha() for c in decoded) >= 4 and all(
            c.isprintable() or c.isspace() for c in decoded
        ):
            out.append(decoded)
    return out


def is_instruction(sentence: str) -> bool:
    """True when ``sentence`` (or a base64 run in it) reads as addressed to the model."""
    if _match(normalize(sentence))[0]:
        return True
    return any(_match(normalize(d))[0] for d in decoded_runs(sentence))


def _open_ended(sentence: str) -> bool:
    """A line that a line break ended, not punctuation: it may go on in the next one."""
    return bool(sentence.strip()) and not _ENDS_SENTENCE.search(sentence)


def screen_passage(text: str) -> tuple[str, int]:
    """``text`` without its sentences that address the model, and how many were removed.

    Sentences end at ``.``, ``!`` or ``?`` followed by white space, and at line
    breaks; a line that ends without punctuation is also read joined with the next
    one, and both go when only the two together read as an instruction. A sentence of
    prompt structure (``</context>``, ``<|im_start|>``, ``### System:``, ``=== END``)
    withholds itself and the rest of the passage: what follows it poses as the prompt,
    not as the document. Returns the
    text unchanged (and 0) when nothing is removed, else the kept sentences joined by
    single spaces. About 1 ms for a 200-token passage with nothing to remove (one
    pass over all its sentences at once); more when something matches.
    """
    sentences = _SENTENCE.split(text)
    pairs = [f"{a} {b}" for a, b in itertools.pairwise(sentences) if _open_ended(a) and b.strip()]
    # One search over every sentence and every pair (one per line, so ``^`` anchors
    # and the sentence-bounded gaps read each alone); most passages stop here.
    probe = "\n".join([*sentences, *pairs])
    if not _match(normalize(probe))[0] and not decoded_runs(text):
        return text, 0
    drop = [is_instruction(s) for s in sentences]
    for i, sentence in enumerate(sentences):
        if drop[i] and _match(normalize(sentence))[1]:
            drop[i:] = [True] * (len(sentences) - i)
            break
    for i in range(len(sentences) - 1):
        if drop[i] or drop[i + 1] or not _open_ended(sentences[i]):
            continue
        if sentences[i + 1].strip() and is_instruction(sentences[i] + " " + sentences[i + 1]):
            drop[i] = drop[i + 1] = True
    removed = sum(drop)
    if not removed:
        return text, 0
    return " ".join(s for s, d in zip(sentences, drop, strict=True) if not d and s.strip()), removed
