"""`diffprobe store import`: add arrays computed by other models to a store, aligned by item id."""

from __future__ import annotations

import click

from diffprobe.commands.store import store_group


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
    note = f"; {r.n_missing} items without a row are NaN" if r.n_missing else ""
    click.echo(f"imported {src} into {store} as {r.name!r} (split {r.split!r}, shape {r.shape}, {r.dtype}){note}")
