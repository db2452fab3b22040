//! `palier-agent`: thin entry point; the commands live in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next().as_deref(), args.next()) {
        (Some("check-config"), Some("--config"), Some(path)) => match palier_agent::Config::load(std::path::Path::new(&path)) {
            Ok(c) => {
                for key in &c.ignored {
                    eprintln!("warning: {} ignores {key}", c.path.display());
                }
                println!(
                    "{}: platform {}, improvement level {}, stability level {}",
                    c.path.display(),
                    c.platform,
                    c.contract.improvement.level,
                    c.contract.stability.level
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(64)
            }
        },
        _ => {
            eprintln!("usage: palier-agent check-config --config FILE");
            ExitCode::from(2)
        }
    }
}
