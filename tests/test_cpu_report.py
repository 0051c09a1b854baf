"""benchmarks.cpu_report (the CPU table: each peer's it/s and fastgan's ratio to it),
benchmarks.cpu_alternate (the rows timed in alternation, ratios within each round) and
benchmarks.cpu_breakdown (µs per CPU-twin launch) on small inputs."""

from benchmarks import cpu_alternate, cpu_breakdown, cpu_report


def _bench(row, batch, its, runs=1):
    return {"extra_info": {"cpu_row": row, "batch": batch, "runs": runs, "its_per_s": its, "gan_its_per_s": its * runs,
                           "ms_per_iter": 1e3 / its, "threads": 2, "device_name": "CPU (test)", "torch": "x"}}


def test_ratios_compare_single_runs_with_fastgan_and_sweeps_with_its_sweep():
    benches = [_bench("fastgan", 128, 400.0), _bench("jax-scan", 128, 500.0), _bench("eager", 128, 200.0),
               _bench("fastgan-4runs", 128, 100.0, runs=4), _bench("jax-vmap4", 128, 50.0, runs=4)]
    text = cpu_report.markdown({"datetime": "2026-12-06T00:00"}, benches)
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ") and "row" not in line}
    assert rows["jax-scan"].rstrip(" |").endswith("0.80x")  # 400 / 500
    assert rows["eager"].rstrip(" |").endswith("2.00x")
    assert rows["jax-vmap4"].rstrip(" |").endswith("2.00x") and "(4 GANs)" in rows["jax-vmap4"]  # 400 / 200 GAN-it/s
    assert rows["fastgan"].rstrip(" |").endswith("—")


def test_breakdown_lists_the_ten_launches(capsys):
    cpu_breakdown.main(["--batch", "8", "--iters", "100"])
    out = capsys.readouterr().out
    launches = [line for line in out.splitlines() if line.startswith("| ") and line[2:4].strip().isdigit()]
    assert len(launches) == 10 and "whole iteration" in out


def test_alternate_times_every_row_in_each_round_and_ratios_within_rounds(capsys):
    cpu_alternate.main(["--batch", "8", "--rounds", "3", "--rows", "eager,fastgan,products"])
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ") and "row" not in line}
    assert list(rows) == ["products", "fastgan", "eager"]  # the report's order
    assert rows["fastgan"].rstrip(" |").endswith("—") and "x [" in rows["eager"] and "3 rounds" in out


def test_alternate_takes_each_ratio_within_its_round():
    times = {"fastgan": [1e-3, 2e-3, 4e-3], "eager": [2e-3, 4e-3, 8e-3]}  # s per iteration: the machine slows, eager stays 2x
    text = cpu_alternate.markdown(times, {"jax-scan": "needs jax"}, 8, 3)
    assert "| eager | 250 | 4.00 | 2.00x [2.00-2.00] |" in text and "| jax-scan | left out: needs jax |" in text
