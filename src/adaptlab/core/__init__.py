"""The bottom layer: vocabulary every other package shares.

Errors that name where and how to fix, the registries, files read and written
safely, progress reporting, the prediction and curve-point records and the one
number formatter. Nothing in ``core`` imports another adaptlab package.
"""
