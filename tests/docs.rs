//! What the README and docs tell users to run is what was built and tested.

/// The README and every document under docs/.
fn documents() -> Vec<(String, String)> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = vec![format!("{root}/README.md")];
    if let Ok(entries) = std::fs::read_dir(format!("{root}/docs")) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path.display().to_string());
            }
        }
    }
    files
        .into_iter()
        .map(|f| (std::fs::read_to_string(&f).unwrap(), f))
        .map(|(text, f)| (f, text))
        .collect()
}

#[test]
fn every_documented_cargo_install_uses_the_lock_file() {
    // Without --locked, `cargo install` resolves the newest compatible versions instead of
    // Cargo.lock's: another build than the one tested, rebuilt from scratch.
    let mut found = 0;
    for (file, text) in documents() {
        for line in text.lines().filter(|l| l.contains("cargo install")) {
            found += 1;
            assert!(line.contains("--locked"), "{file}: `{line}` lacks --locked");
        }
    }
    assert!(found > 0, "the README shows how to install");
}
