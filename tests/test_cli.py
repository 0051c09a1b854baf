"""The command lines' help: each flag's default once, never "(default: None)"."""

import pytest

from fastgan import animate, sample
from fastgan import train_cli as train


@pytest.mark.parametrize("main, given, unset", [
    (train.main, "(default: 128)", "(default: --lr)"),  # --batch-size; --lr-d has no default of its own
    (sample.main, "(default: 64)", "(default: beside the checkpoint)"),  # --n; --out
    (animate.main, "(default: 10.0)", "(default: RUN/progress.gif)"),  # --fps; --out
])
def test_help_gives_each_default_once(capsys, main, given, unset):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())  # as one line, however argparse wraps it
    assert stop.value.code == 0
    assert given in out and unset in out
    assert "(default: None)" not in out
