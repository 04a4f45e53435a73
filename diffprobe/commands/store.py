"""``diffprobe store info|verify|export``."""

from __future__ import annotations

import click

from diffprobe.cli import main


@main.group("store")
def store_group() -> None:
    """Inspect, check and convert feature stores."""


def _fmt_bytes(n: int) -> str:
    from diffprobe.pipelines.extract_job import _fmt_bytes as f

    return f(n)


@store_group.command("info")
@click.argument("store", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(store: str, as_json: bool) -> None:
    """Splits, arrays, shapes, completeness and size of STORE."""
    import json

    from diffprobe.store.maintenance import store_info
    from diffprobe.store.store import open_store

    with open_store(store) as s:
        data = store_info(s)
    if as_json:
        click.echo(json.dumps(data, indent=1))
        return
    click.echo(f"{data['path']} ({data['format']}, {_fmt_bytes(data['bytes_on_disk'])} on disk)")
    click.echo(f"  model {data['model']}, config {data['config_hash']}, {data['classes']} classes, "
               f"created {data['created']} by diffprobe {data['package_version']}")  # fmt: skip
    click.echo(f"  {'complete' if data['complete'] else 'INCOMPLETE'}")
    for split, sp in data["splits"].items():
        failed = "?" if sp["failed"] is None else sp["failed"]
        on = ", ".join(f"{d} ({n})" for d, n in sp["computed_on"].items())
        click.echo(f"  split {split}: {sp['items']} items, unit size {sp['unit_size']}, failed {failed}; units computed on {on or '-'}")
        for name, a in sp["arrays"].items():
            shape = "×".join(str(d) for d in a["shape"])
            click.echo(f"    {name:<18} {shape:<22} {a['dtype']:<8} units {a['units_done']}/{a['units']}")


def _echo_missing(missing_units: dict[str, dict[str, list[int]]], prefix: str) -> None:
    for split, missing in missing_units.items():
        for name, units in missing.items():
            shown = ", ".join(map(str, units[:20])) + (" …" if len(units) > 20 else "")
            click.echo(f"{prefix}: {split}/{name}: {len(units)} unit(s) not done ({shown})")


@store_group.command("verify")
@click.argument("store", type=click.Path(exists=True))
def verify(store: str) -> None:
    """Check markers and values; exit 1 when STORE is incomplete or holds NaN/Inf in finished rows."""
    from diffprobe.store.maintenance import verify_store
    from diffprobe.store.store import open_store

    with open_store(store) as s:
        rep = verify_store(s)
    _echo_missing(rep.missing_units, "incomplete")
    for line in rep.bad_values:
        click.echo(f"bad values: {line}")
    for line in rep.notes:
        click.echo(f"note: {line}")
    for split, fails in rep.failed_items.items():
        for item, err in fails:
            click.echo(f"failed item: {split}/{item}: {err}")
    if not rep.ok:
        click.echo("store is NOT complete; re-run the extraction to finish it")
        raise SystemExit(1)
    n_failed = sum(len(f) for f in rep.failed_items.values())
    click.echo(f"ok: every unit is done, no NaN/Inf in valid rows ({n_failed} failed item(s) recorded)")


@store_group.command("export")
@click.argument("src", type=click.Path(exists=True))
@click.argument("dst", type=click.Path())
@click.option("--overwrite", is_flag=True, help="Replace DST if it exists.")
def export(src: str, dst: str, overwrite: bool) -> None:
    """Copy SRC to DST, converting format by DST's name (directory → Zarr, .h5/.hdf5 → HDF5)."""
    from diffprobe.store.maintenance import export_store

    out = export_store(src, dst, overwrite=overwrite)
    click.echo(f"exported {src} → {out}")


@store_group.command("finalize")
@click.argument("store", type=click.Path(exists=True))
def finalize(store: str) -> None:
    """After `extract --shard i/n` runs: check every unit is done and consolidate metadata.

    Exits 1 and names the missing units (per split and array) when the store is incomplete.
    """
    from diffprobe.store.maintenance import finalize_store

    rep = finalize_store(store)
    _echo_missing(rep.missing_units, "missing")
    if not rep.ok:
        click.echo("store is NOT complete: run the missing shards (or the plain extract command) again")
        raise SystemExit(1)
    n_failed = sum(len(f) for f in rep.failed_items.values())
    click.echo(f"finalized: every unit is done ({n_failed} failed item(s) recorded); metadata consolidated")
