"""``diffprobe store info|show|verify|repair|export|finalize|import``."""

from __future__ import annotations

import click

from diffprobe.commands.options import device_option, json_option, progress_option


@click.group("store")
def store_group() -> None:
    """Inspect, check, convert and extend feature stores."""


@store_group.command("info")
@click.argument("store", type=click.Path(exists=True))
@json_option()
def info(store: str, as_json: bool) -> None:
    """Splits, arrays, shapes, completeness and size of STORE."""
    import json

    from diffprobe.store.inspect import info_lines, store_info
    from diffprobe.store.store import open_store

    with open_store(store) as s:
        data = store_info(s)
    click.echo(json.dumps(data, indent=1) if as_json else "\n".join(info_lines(data)))


@store_group.command("show")
@click.argument("store", type=click.Path(exists=True))
@click.argument("item")
@click.option("--split", default=None, help="The item's split [default: the store's only split].")
@click.option("--views", "views", is_flag=True,
              help="Re-create the item's views from the recorded parameters, as extraction fed them, and write them as a PNG grid.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="The grid's PNG [default: <store>-<item>-views.png in the current directory].")
@click.option("--data", default=None, help="The images, if they moved since the store was made [default: as recorded].")
def show(store: str, item: str, split: str | None, views: bool, out: str | None, data: str | None) -> None:
    """What STORE holds for ITEM (an item id, a row such as #12, or the unique id ending in /ITEM):
    label, path, stored shapes and view parameters; with --views, a PNG grid of its views (and masks)."""
    from diffprobe.pipelines.extraction.view_grid import show_item

    click.echo("\n".join(show_item(store, item, split=split, views=views, data=data, out=out).lines()))


@store_group.command("verify")
@click.argument("store", type=click.Path(exists=True))
@click.option("--deep", is_flag=True, help="Also read every chunk: chunk checksums, the digests each unit recorded, NaN/Inf in valid rows.")
def verify(store: str, deep: bool) -> None:
    """Check STORE's markers (fast: metadata only); exit 1 when a unit is not done, or (with --deep)
    a chunk fails its checksum, a unit's values differ from what was written, or valid rows hold NaN/Inf."""
    from diffprobe.store.inspect import verify_lines, verify_store
    from diffprobe.store.integrity import deep_verify
    from diffprobe.store.store import open_store

    with open_store(store) as s:
        rep = verify_store(s)
        deep_rep = deep_verify(s) if deep else None
    lines = verify_lines(rep)
    if deep_rep is not None:
        found = [d.line() for d in deep_rep.damage] + [f"bad values: {b}" for b in deep_rep.bad_values]
        lines[-1:-1] = found + [f"note: {n}" for n in deep_rep.notes]
        if rep.findings:
            pass  # damaged metadata: the verdict of the metadata check stands
        elif deep_rep.damage:
            lines[-1] = (f"store is DAMAGED: {len(deep_rep.damage)} unit(s) of arrays hold other values than were written; "
                         f"`diffprobe store repair {store}` recomputes them")  # fmt: skip
        elif deep_rep.bad_values:
            lines[-1] = ("store holds NaN/Inf in valid rows, as they were computed (fp16 overflow?); "
                         "extract them again into a new store with --precision fp32")  # fmt: skip
        elif rep.ok:
            lines[-1] = (f"ok: every unit is done ({rep.n_failed} failed item(s) recorded); deep: {deep_rep.chunks_read} reads, "
                         "every checksum and digest matches, no NaN/Inf in valid rows")  # fmt: skip
    click.echo("\n".join(lines))
    if not rep.ok or (deep_rep is not None and not deep_rep.ok):
        raise SystemExit(1)


@store_group.command("repair")
@click.argument("store", type=click.Path(exists=True))
@click.option("--data", default=None, help="The images, if they moved since the store was made [default: as recorded].")
@click.option("--checkpoint", default=None, help="The checkpoint, if it moved [default: as recorded].")
@device_option()
@progress_option()
def repair(store: str, data: str | None, checkpoint: str | None, device: str, progress: bool | None) -> None:
    """Find STORE's damaged units (as `verify --deep`) and compute exactly those again, from the
    extraction recorded in the store; then check again. Exit 1 if damage remains."""
    from diffprobe.pipelines.extraction.repair import repair_store

    rep = repair_store(store, progress=progress, data=data, checkpoint=checkpoint, device=device)
    click.echo("\n".join(rep.lines()))
    if not rep.ok:
        raise SystemExit(1)


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
    from diffprobe.store.maintenance import finalize_lines, finalize_store

    rep = finalize_store(store)
    click.echo("\n".join(finalize_lines(rep)))
    if not rep.ok:
        raise SystemExit(1)


@store_group.command("import")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.option("--into", "store", required=True, type=click.Path(exists=True), help="The feature store to add to.")
@click.option("--name", required=True, help="Array name in the store, e.g. mae_layer6.")
@click.option("--split", default=None, help="Split the rows belong to [default: the store's only split].")
@click.option("--ids", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Text file, one item id per line, in SRC's row order [default: rows already in the store's order].")
@click.option("--dataset", default=None, help="Dataset inside SRC.h5 [default: its only dataset].")
@click.option("--overwrite", is_flag=True, help="Replace an existing array of that name.")
def import_cmd(src: str, store: str, name: str, split: str | None, ids: str | None, dataset: str | None, overwrite: bool) -> None:
    """Add the (N, ...) array in SRC (.npy or .h5) to a store as NAME, e.g. MAE or ResNet layers for `cka stores`."""
    from diffprobe.store.importing import import_array

    r = import_array(store, src, name=name, split=split, ids=ids, dataset=dataset, overwrite=overwrite)
    click.echo(r.summary(src, store))
