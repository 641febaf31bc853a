//! Prints the ScanJob CRD as YAML: `cargo run --bin crdgen > crds/scanjob.yaml`.

fn main() -> anyhow::Result<()> {
    print!("{}", scanjob_operator::crd::crd_yaml()?);
    Ok(())
}
