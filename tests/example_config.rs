//! `examples/train.toml`, which the README points to for every setting, states the defaults.

use catdog::train::TrainConfig;

#[test]
fn the_example_config_states_every_default() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/train.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let parsed: TrainConfig = toml::from_str(&text).unwrap();
    assert_eq!(parsed, TrainConfig::default());
    // Every top-level setting is written out (commented when its default is "none").
    let table: toml::Table = toml::from_str(&text).unwrap();
    let defaults = toml::Table::try_from(TrainConfig::default()).unwrap();
    for key in defaults.keys() {
        let commented = text.contains(&format!("# {key} = "));
        assert!(
            table.contains_key(key) || commented,
            "examples/train.toml does not mention `{key}`"
        );
    }
}
