//! `berth-registry`: serve the OCI distribution API, collect garbage, or
//! pull and push images as a client (to try the client and benchmark it).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_image::layer::ApplyOptions;
use berth_image::reference::Reference;
use berth_image::snapshot::Snapshotter;
use berth_image::store::{ImageStore, Platform};
use berth_registry::auth::Auth;
use berth_registry::client::{
    Client, ClientOptions, Credentials, DockerConfig, Progress, PullOptions, PushOptions,
};
use berth_registry::config::{Config, DEFAULT_ADDR, TlsConfig, default_root};
use berth_registry::server::{self, Registry, tls};
use berth_registry::storage::Storage;
use berth_registry::storage::gc::GcOptions;
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[command(
    name = "berth-registry",
    version,
    about = "An OCI distribution registry"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the registry API.
    Serve(ServeArgs),
    /// Remove blobs no tag, manifest or referrer reaches.
    Gc(GcArgs),
    /// Pull an image from a registry into an image store.
    Pull(PullArgs),
    /// Push an image from an image store to a registry.
    Push(PushArgs),
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// Image store root (berthd's data root: content/ and state.redb).
    #[arg(long, env = "BERTH_ROOT")]
    root: PathBuf,
    /// A registry (`host[:port]` or CIDR) that may be reached over plain
    /// HTTP; loopback ones always may. Repeatable.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Per-registry CAs and client certificates (`<dir>/<host[:port]>/`).
    #[arg(long, default_value = berth_registry::client::DEFAULT_CERTS_DIR)]
    certs_dir: PathBuf,
    /// Docker client config with credentials (default
    /// $DOCKER_CONFIG/config.json or ~/.docker/config.json).
    #[arg(long)]
    docker_config: Option<PathBuf>,
    /// Credentials as Docker's X-Registry-Auth header value (base64url
    /// JSON); overrides the Docker config.
    #[arg(long, env = "BERTH_REGISTRY_AUTH")]
    registry_auth: Option<String>,
    /// Print Docker's JSON progress messages instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct PullArgs {
    /// The image: `host[:port]/repo[:tag|@digest]`.
    reference: String,
    #[command(flatten)]
    client: ClientArgs,
    /// The platform to pick from an index (default: this host's).
    #[arg(long)]
    platform: Option<String>,
    /// Also unpack the layers into snapshots under `<root>/snapshots`, as
    /// berthd does before a container is made (and dockerd at pull).
    #[arg(long)]
    unpack: bool,
}

#[derive(Debug, Args)]
struct PushArgs {
    /// The image: `host[:port]/repo[:tag]`.
    reference: String,
    #[command(flatten)]
    client: ClientArgs,
    /// Push this local image instead of the one named by the reference.
    #[arg(long)]
    source: Option<String>,
    /// Upload blobs in chunks of this many bytes (PATCH + Content-Range).
    #[arg(long)]
    chunk_size: Option<u64>,
    /// A repository of the same registry to mount blobs from. Repeatable.
    #[arg(long)]
    mount_from: Vec<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Listen address (default 127.0.0.1:5000).
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Storage root (default $BERTH_ROOT/registry, or /var/lib/berth/registry).
    #[arg(long, env = "BERTH_REGISTRY_ROOT")]
    root: Option<PathBuf>,
    /// JSON configuration file; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// htpasswd file (bcrypt) for basic auth.
    #[arg(long)]
    htpasswd: Option<PathBuf>,
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require a client certificate signed by a CA in this file (PEM).
    #[arg(long)]
    tls_client_ca: Option<PathBuf>,
    /// Refuse every write.
    #[arg(long)]
    read_only: bool,
}

#[derive(Debug, Args)]
struct GcArgs {
    /// Storage root (default $BERTH_ROOT/registry, or /var/lib/berth/registry).
    #[arg(long, env = "BERTH_REGISTRY_ROOT")]
    root: Option<PathBuf>,
    /// Report what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also remove manifests that no tag (or referrer of a tagged one) reaches.
    #[arg(long)]
    delete_untagged: bool,
    /// Remove upload sessions idle for longer than this many seconds.
    #[arg(long, default_value_t = 24 * 3600)]
    upload_ttl: u64,
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Gc(args) => gc(args),
        Command::Pull(args) => pull(args),
        Command::Push(args) => push(args),
    };
    if let Err(e) = result {
        eprintln!("berth-registry: {e:#}");
        std::process::exit(1);
    }
}

/// The client, the credentials for `reference`'s registry, the store and
/// a progress printer.
fn client_setup(
    args: &ClientArgs,
    reference: &str,
) -> anyhow::Result<(Client, Credentials, ImageStore)> {
    let client = Client::new(ClientOptions {
        insecure_registries: args.insecure_registries.clone(),
        certs_dir: args.certs_dir.clone(),
        ..ClientOptions::default()
    });
    let r = Reference::parse_normalized(reference)?;
    let creds = match &args.registry_auth {
        Some(v) => Credentials::from_x_registry_auth(v)?.0,
        None => {
            let config = match &args.docker_config {
                Some(p) => DockerConfig::load(p)?,
                None => DockerConfig::load_default()?,
            };
            config.credentials(r.domain())?
        }
    };
    let store = ImageStore::open(&args.root)
        .with_context(|| format!("open image store {}", args.root.display()))?;
    Ok((client, creds, store))
}

fn printer(json: bool) -> impl Fn(&Progress) + Send + Sync {
    let out = std::sync::Mutex::new(std::io::stdout());
    move |p: &Progress| {
        // Byte counts are many; text output shows only state changes.
        if !json && p.current.is_some() && p.current != p.total {
            return;
        }
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = if json {
            writeln!(out, "{}", p.to_json())
        } else {
            writeln!(out, "{p}")
        };
        let _ = out.flush();
    }
}

fn pull(args: PullArgs) -> anyhow::Result<()> {
    let (client, credentials, store) = client_setup(&args.client, &args.reference)?;
    let platform = match &args.platform {
        Some(p) => Some(
            Platform::parse(p)
                .with_context(|| format!("invalid platform {p:?} (os/arch[/variant])"))?,
        ),
        None => None,
    };
    let opts = PullOptions {
        platform,
        credentials,
        ..PullOptions::default()
    };
    let print = printer(args.client.json);
    let report = client.pull(&store, &args.reference, &opts, &print)?;
    if args.unpack {
        let snapshots = args.client.root.join("snapshots");
        let snapshotter = Snapshotter::open(&snapshots, store.db().clone(), None)
            .with_context(|| format!("open snapshots {}", snapshots.display()))?;
        let platform = opts.platform.unwrap_or_else(Platform::host);
        store
            .unpack(
                &snapshotter,
                &report.image.target,
                &platform,
                &ApplyOptions::default(),
            )
            .context("unpack")?;
    }
    Ok(())
}

fn push(args: PushArgs) -> anyhow::Result<()> {
    let (client, credentials, store) = client_setup(&args.client, &args.reference)?;
    let opts = PushOptions {
        credentials,
        source: args.source,
        chunk_size: args.chunk_size,
        mount_from: args.mount_from,
        ..PushOptions::default()
    };
    let print = printer(args.client.json);
    client.push(&store, &args.reference, &opts, &print)?;
    Ok(())
}

fn gc(args: GcArgs) -> anyhow::Result<()> {
    let root = args.root.unwrap_or_else(default_root);
    let storage = Storage::open(&root).with_context(|| format!("open {}", root.display()))?;
    let report = storage
        .collect_garbage(&GcOptions {
            dry_run: args.dry_run,
            delete_untagged: args.delete_untagged,
            upload_ttl: Duration::from_secs(args.upload_ttl),
        })
        .context("gc")?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut out = std::io::stdout().lock();
    for (repo, digest) in &report.manifests {
        writeln!(out, "{verb} manifest {repo}@{digest}")?;
    }
    for info in &report.blobs {
        writeln!(out, "{verb} blob {} {} bytes", info.digest, info.size)?;
    }
    for upload in &report.uploads {
        writeln!(out, "{verb} upload {upload}")?;
    }
    for digest in &report.missing {
        writeln!(out, "missing blob {digest}: referenced, but not stored")?;
    }
    writeln!(
        out,
        "{verb} {} blobs, {} bytes freed; {} manifests; {} blobs kept; {} missing",
        report.blobs.len(),
        report.bytes,
        report.manifests.len(),
        report.kept,
        report.missing.len()
    )?;
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(a) = args.addr {
        config.addr = Some(a);
    }
    if let Some(r) = args.root {
        config.root = Some(r);
    }
    if let Some(h) = args.htpasswd {
        config.auth.htpasswd = Some(h);
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(TlsConfig {
            cert,
            key,
            client_ca: None,
        });
    }
    if let Some(ca) = args.tls_client_ca {
        match config.tls.as_mut() {
            Some(t) => t.client_ca = Some(ca),
            None => anyhow::bail!("--tls-client-ca needs TLS: give --tls-cert and --tls-key"),
        }
    }
    config.read_only |= args.read_only;

    let root = config.root.clone().unwrap_or_else(default_root);
    let storage = Storage::open(&root).with_context(|| format!("open {}", root.display()))?;
    // A writable server holds the storage lock, so gc cannot run beside it.
    let _lock = if config.read_only {
        None
    } else {
        Some(storage.lock_exclusive().context("take the storage lock")?)
    };
    let auth = Auth::new(&config.auth, &root).context("auth")?;
    let acceptor = match &config.tls {
        Some(t) => Some(tls::acceptor(&t.cert, &t.key, t.client_ca.as_deref())?),
        None => None,
    };
    let mut registry = Registry::new(storage, auth, config.read_only);
    if let Some(m) = config.max_manifest_bytes {
        registry.max_manifest_bytes = m;
    }
    registry.set_upload_limit(
        config.uploads.max_concurrent,
        Duration::from_secs(config.uploads.wait_secs),
    );
    let registry = Arc::new(registry);
    let addr = match config.addr {
        Some(a) => a,
        None => DEFAULT_ADDR.parse().context("default address")?,
    };
    let grace = Duration::from_secs(config.shutdown_timeout_secs.unwrap_or(30));
    let ttl = Duration::from_secs(config.uploads.ttl_secs);
    let interval = Duration::from_secs(config.uploads.purge_interval_secs.max(1));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen on {addr}"))?;
        let local = listener.local_addr().context("listen address")?;
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        tracing::info!(root = %root.display(), read_only = config.read_only, "listening on {scheme}://{local}");
        println!("listening on {scheme}://{local}");
        std::io::stdout().flush().ok();

        if !config.read_only {
            let purger = registry.clone();
            tokio::spawn(async move {
                loop {
                    let r = purger.clone();
                    match tokio::task::spawn_blocking(move || r.storage.purge_uploads(ttl)).await {
                        Ok(Ok(purged)) => {
                            for p in purged {
                                tracing::info!("purged stale upload {p}");
                            }
                        }
                        Ok(Err(e)) => tracing::warn!(error = %e, "purging stale uploads"),
                        Err(e) => tracing::warn!(error = %e, "purge task"),
                    }
                    tokio::time::sleep(interval).await;
                }
            });
        }

        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            }
        };
        server::serve(registry, listener, acceptor, shutdown, grace).await?;
        anyhow::Ok(())
    })?;
    // Requests left hanging past the grace time must not keep the process up.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
