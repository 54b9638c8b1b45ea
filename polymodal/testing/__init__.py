"""Conformance checks every component must pass, ours and third parties': tokenizers, data sources, encoders and
heads, each as many small named checks (in the manner of scikit-learn's estimator checks).

Use them in a plugin's own test suite::

    from polymodal.testing import check_data_source, check_tokenizer

    def test_my_tokenizer():
        check_tokenizer("eeg")

or one test case per check::

    @pytest.mark.parametrize("check", list(head_checks("my_head")), ids=repr)
    def test_my_head(check):
        check()

A failing check raises :class:`ConformanceError` (an ``AssertionError``) naming the component, the check and the
problem, in the kit's own words (e.g. "the output does not depend on any learnable parameter"), never a raw error
from deep inside torch.
"""

from polymodal.testing._checks import Check, ConformanceError
from polymodal.testing.encoders import check_encoder, encoder_checks
from polymodal.testing.heads import check_head, head_checks
from polymodal.testing.sources import check_data_source, data_source_checks
from polymodal.testing.tokenizers import check_tokenizer, tokenizer_checks

__all__ = [
    "Check",
    "ConformanceError",
    "check_data_source",
    "check_encoder",
    "check_head",
    "check_tokenizer",
    "data_source_checks",
    "encoder_checks",
    "head_checks",
    "tokenizer_checks",
]
