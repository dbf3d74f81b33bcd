use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = engram_db::cli::Cli::parse();
    if let Err(e) = engram_db::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
