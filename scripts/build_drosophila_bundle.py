"""Rebuild the bundled Drosophila embryo pair shipped in ``spalstf/datasets/_data``.

Reads the raw files of benchmark pair "Dataset5_FISH" (see ``../shared/data/drosophila_embryo/PROVENANCE.md``),
checks their sha256 and writes ``drosophila_embryo.h5mu``:

- ``"spatial"``: 3039 cells x 84 genes, BDTNP in situ values (continuous, in [0, 1]), 3-D coordinates in
  ``obsm["spatial"]``;
- ``"rna"``: 1297 cells x at most 2000 genes, raw UMI counts (CSR, int32): the 84 spatial genes plus the most highly
  variable of the remaining reference genes (``scanpy.pp.highly_variable_genes(flavor="seurat")`` on log1p(CP10k)
  values, ranked by normalised dispersion).

Usage::

    python scripts/build_drosophila_bundle.py [--raw-dir ../shared/data/drosophila_embryo] [--n-genes 2000]
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RAW = REPO.parent / "shared" / "data" / "drosophila_embryo"
OUT = REPO / "src" / "spalstf" / "datasets" / "_data" / "drosophila_embryo.h5mu"


def _check_sha256(raw_dir: Path) -> None:
    for line in (raw_dir / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        found = hashlib.sha256((raw_dir / name).read_bytes()).hexdigest()
        if found != digest:
            raise ValueError(f"{name}: sha256 {found} does not match the pinned {digest}")


def build(raw_dir: Path, n_genes: int) -> md.MuData:
    _check_sha256(raw_dir)
    st = pd.read_csv(raw_dir / "bdtnp.txt", sep="\t")
    xyz = pd.read_csv(raw_dir / "geometry.txt", sep=" ")
    dge = pd.read_csv(raw_dir / "dge_raw.txt.gz", sep="\t", header=None, index_col=0)
    assert st.shape == (3039, 84) and xyz.shape == (3039, 3) and dge.shape == (8924, 1297)

    spatial = ad.AnnData(
        X=st.to_numpy(np.float32),
        obs=pd.DataFrame(index=[f"bdtnp_{i:04d}" for i in range(st.shape[0])]),
        var=pd.DataFrame(index=st.columns.astype(str)),
    )
    spatial.obsm["spatial"] = xyz.to_numpy(np.float64)
    spatial.uns["source"] = "BDTNP virtual embryo (Fowlkes et al. 2008, Cell 133:364), values in [0, 1]"

    counts = sparse.csr_matrix(dge.to_numpy(np.int32).T)
    rna_full = ad.AnnData(
        X=counts,
        obs=pd.DataFrame(index=[f"dvex_{i:04d}" for i in range(counts.shape[0])]),
        var=pd.DataFrame(index=pd.Index(dge.index.astype(str), name=None)),
    )
    lognorm = rna_full.copy()
    sc.pp.normalize_total(lognorm, target_sum=1e4)
    sc.pp.log1p(lognorm)
    sc.pp.highly_variable_genes(lognorm, flavor="seurat")
    disp = lognorm.var["dispersions_norm"].fillna(-np.inf)
    spatial_genes = list(spatial.var_names)
    others = disp.drop(index=spatial_genes).sort_values(ascending=False)
    keep = spatial_genes + list(others.index[: n_genes - len(spatial_genes)])
    rna = rna_full[:, keep].copy()
    rna.var.index.name = None
    rna.var["in_spatial_panel"] = rna.var_names.isin(spatial_genes)
    rna.var["dispersions_norm"] = disp.loc[keep].to_numpy()
    rna.uns["source"] = "Karaiskos et al. 2017, Science 358:194 (GEO GSE95025), raw UMI counts"
    rna.uns["gene_selection"] = (
        f"the {len(spatial_genes)} spatial genes plus the {len(keep) - len(spatial_genes)} most highly variable "
        "other genes (scanpy highly_variable_genes, flavor='seurat', on log1p CP10k; ranked by dispersions_norm)"
    )
    mdata = md.MuData({"spatial": spatial, "rna": rna})
    mdata.uns["name"] = "drosophila_embryo"
    mdata.uns["citation"] = (
        "Karaiskos N, et al. The Drosophila embryo at single-cell transcriptome resolution. Science 2017;358:194. "
        "Fowlkes CC, et al. A quantitative spatiotemporal atlas of gene expression in the Drosophila blastoderm. "
        "Cell 2008;133:364."
    )
    return mdata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-dir", type=Path, default=DEFAULT_RAW)
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    mdata = build(args.raw_dir, args.n_genes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    mdata.write(args.out, compression="gzip")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {mdata}")


if __name__ == "__main__":
    main()
