//! Writes every target's seed corpus to `fuzz/corpus/TARGET/seed-*`, from the encoders of the production code.
//!
//! Run from `fuzz/`: `cargo run --example write_corpus`. Files of other names (findings kept as regression
//! inputs) are left alone; seed files no target makes any more are removed.

use std::fs;
use std::path::Path;

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for target in tally_fuzz::TARGETS {
        let dir = corpus.join(target.name);
        fs::create_dir_all(&dir)?;
        let seeds = (target.seeds)();
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_owned();
            if name.starts_with("seed-") && !seeds.iter().any(|seed| seed.name == name) {
                fs::remove_file(&path)?;
            }
        }
        let bytes: usize = seeds.iter().map(|seed| seed.bytes.len()).sum();
        for seed in &seeds {
            fs::write(dir.join(&seed.name), &seed.bytes)?;
        }
        println!("{}: {} seeds, {bytes} bytes", target.name, seeds.len());
    }
    Ok(())
}
