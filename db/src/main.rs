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
        // The chain of causes, leaving out a cause whose text an outer
        // message already carries (errors that quote their source).
        let mut message = e.to_string();
        for cause in e.chain().skip(1).map(|c| c.to_string()) {
            if !message.contains(&cause) {
                message = format!("{message}: {cause}");
            }
        }
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
