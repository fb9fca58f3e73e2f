//! `emperor-docgen OUTDIR`: writes the man pages (`OUTDIR/man8/*.8`) and the bash, zsh
//! and fish completions (`OUTDIR/completions/{bash,zsh,fish}/`) of emperor, vassal and
//! emperorctl. `scripts/package.sh` runs it and installs the results.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(outdir), None) = (args.next(), args.next()) else {
        eprintln!("usage: emperor-docgen OUTDIR");
        return ExitCode::from(2);
    };
    match emperor_docgen::generate(&PathBuf::from(outdir)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("emperor-docgen: {e}");
            ExitCode::FAILURE
        }
    }
}
