"""The CPU table of `pytest benchmarks/test_cpu.py --benchmark-json=R.json`: per batch, each row's
it/s (GAN-it/s for rows of several GANs), ms per iteration, and fastgan's CPU trainer's ratio to
it (> 1: fastgan is faster); the products-alone row is the floor fastgan is measured against.

    python -m benchmarks.cpu_report R.json [MORE.json ...]
"""

import argparse

from .report import load

ORDER = ["products", "fastgan", "fastgan-stable", "fastgan-4runs", "eager", "torch", "jax-jit", "jax-scan", "jax-vmap4"]


def compared_with(runs):
    """The fastgan row a row of `runs` GANs is set against: the 4-run sweep for several, else the single run."""
    return "fastgan-4runs" if runs > 1 else "fastgan"


def table(benches):
    """{batch: {row: info}} of the CPU rows."""
    out = {}
    for b in benches:
        info = b["extra_info"]
        if "cpu_row" in info and "its_per_s" in info:
            out.setdefault(info["batch"], {})[info["cpu_row"]] = info
    return out


def markdown(results, benches):
    rows = table(benches)
    env = next((b["extra_info"] for b in benches if "cpu_row" in b["extra_info"]), {})
    lines = [f"{env.get('device_name', '?')}, {results.get('datetime', '')[:10]}; torch {env.get('torch')}, "
             f"{env.get('threads')} threads", ""]
    for batch, found in sorted(rows.items()):
        lines += [f"batch {batch}:", "",
                  "| row | it/s (GAN-it/s) | ms per iteration | fastgan's ratio to it |", "|---|---:|---:|---:|"]
        for name in ORDER + sorted(set(found) - set(ORDER)):
            info = found.get(name)
            if info is None:
                continue
            rate = info["gan_its_per_s"]
            compare = found.get(compared_with(info["runs"]))
            ratio = compare["gan_its_per_s"] / rate if compare and compare is not info else None
            shown = f"{rate:,.0f}" + (f" ({info['runs']} GANs)" if info["runs"] > 1 else "")
            lines.append(f"| {name} | {shown} | {info['ms_per_iter']:.2f} | {'—' if ratio is None else f'{ratio:.2f}x'} |")
        lines.append("")
    lines.append("Rows of several GANs are compared with fastgan's 4-run sweep, the others with its single run; "
                 "the products row is the floor (fastgan / products < 1: the time beyond the products).")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="--benchmark-json files")
    args = p.parse_args(argv)
    print(markdown(*load(*args.results)))


if __name__ == "__main__":
    main()
