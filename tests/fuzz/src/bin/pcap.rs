//! The capture reader (pcap and pcapng) with the engine behind it: `scrubber replay` of
//! arbitrary bytes never panics and never writes a partial output.
use scrubber::control::config::ReplayFiles;
use scrubber::engine::{Engine, EngineConfig, Protected, SynMode};

fn main() {
    let dir = std::env::temp_dir().join(format!("scrubber-fuzz-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.pcap");
    let pass = dir.join("pass.pcap");
    let cfg = EngineConfig {
        protect: vec![Protected { addr: "198.18.0.10".parse().unwrap(), port: Some(80) }],
        syn_mode: SynMode::Proxy,
        table_capacity: 1 << 10,
        ..EngineConfig::default()
    };
    afl::fuzz!(|data: &[u8]| {
        std::fs::write(&input, data).unwrap();
        let _ = std::fs::remove_file(&pass);
        let mut e = Engine::new(cfg.clone()).unwrap();
        let files = ReplayFiles { input: input.clone(), pass: Some(pass.clone()), drop: None, answers: None };
        let _ = scrubber::tools::replay::replay(&mut e, &files);
        let partial =
            std::fs::read_dir(&dir).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("partial"));
        assert!(!partial, "a temporary output was left behind");
    });
}
