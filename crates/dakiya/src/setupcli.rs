//! `dakiya setup DOMAIN`: a complete production configuration for a new mail domain, its data
//! directory, a DKIM key and optionally the first user; then the next steps and the DNS
//! records. Everything is checked before anything is written, and no existing file is ever
//! overwritten (docs/hosting.md).

mod names;
mod records;
mod template;

use dakiya_mailauth::{Algorithm, generate_key};
use nix::unistd::User;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use template::Settings;

/// The arguments of `dakiya setup`.
#[derive(clap::Args, Debug)]
pub struct SetupArgs {
    /// The mail domain, e.g. example.org (an internationalized name in Unicode or as xn-- labels).
    domain: String,
    /// This server's name (the MX record points to it). Default: mail.DOMAIN.
    #[arg(long)]
    hostname: Option<String>,
    /// Where to write the configuration.
    #[arg(long, default_value = "/etc/dakiya/dakiya.toml")]
    config: PathBuf,
    /// The data directory (queue, mailboxes, keys, users); must be missing or empty.
    #[arg(long, default_value = "/var/lib/dakiya")]
    data_dir: PathBuf,
    /// Add the first user, LOCALPART@DOMAIN (its password is asked for, or read from the
    /// first line of standard input when it is not a terminal); postmaster and abuse go to it.
    #[arg(long, value_name = "LOCALPART")]
    user: Option<String>,
    /// An address for the mail listeners (25, 587, 465, 995); repeat for more. Default:
    /// 0.0.0.0 and :: (every IPv4 and IPv6 address).
    #[arg(long = "listen-address", value_name = "IP")]
    listen_address: Vec<IpAddr>,
    /// The system account the server runs as (`user` in the configuration).
    #[arg(long, default_value = "dakiya", value_name = "NAME")]
    run_as: String,
    /// The TLS certificate chain (PEM) for the host name; with --tls-key.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM); with --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
}

/// Everything `setup` will do, checked.
struct Plan {
    settings: Settings,
    config: PathBuf,
    /// The account that will own the data directory, when it exists.
    owner: Option<(u32, u32)>,
    /// The first user's address (`user@domain`), if any.
    address: Option<String>,
    selector: String,
    /// The configuration file is the package's unchanged placeholder, which is replaced.
    replace: bool,
}

/// The placeholder configuration the Debian package installs (packaging/dakiya.toml).
const PLACEHOLDER: &str = include_str!("../../../packaging/dakiya.toml");

/// Whether `path` holds exactly the package's placeholder: replacing it loses nothing.
fn is_placeholder(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| text == PLACEHOLDER)
}

/// Runs `dakiya setup`: exit status 0, or 1 with `dakiya: MESSAGE` on stderr and nothing
/// written.
pub fn run(args: SetupArgs) -> ExitCode {
    match plan(args).and_then(|p| execute(&p).map(|dkim| report(&p, &dkim))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dakiya: {e}");
            ExitCode::FAILURE
        }
    }
}

fn plan(args: SetupArgs) -> Result<Plan, String> {
    let domain = names::parse(&args.domain, "domain")?;
    let hostname = match &args.hostname {
        Some(h) => names::parse(h, "host name")?,
        None => names::parse(&format!("mail.{}", domain.ascii), "host name")?,
    };
    if !dakiya_config::is_valid_account_name(&args.run_as) {
        return Err(format!("--run-as {:?} is not a valid user name", args.run_as));
    }
    let account = User::from_name(&args.run_as).map_err(|e| format!("cannot look up user {:?}: {e}", args.run_as))?;
    let mailbox = match &args.user {
        None => None,
        Some(local) => Some(mailbox(local, &domain.ascii)?),
    };
    let addresses = if args.listen_address.is_empty() {
        vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)]
    } else {
        args.listen_address.clone()
    };
    let tls = args.tls_cert.clone().zip(args.tls_key.clone());
    for file in tls.iter().flat_map(|(c, k)| [c, k]) {
        std::fs::File::open(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    }
    let replace = is_placeholder(&args.config);
    if !replace {
        refuse_existing(&args.config, "the configuration file")?;
    }
    check_data_dir(&args.data_dir)?;
    let settings = Settings {
        domain,
        hostname,
        data_dir: args.data_dir.clone(),
        addresses,
        mailbox: mailbox.clone(),
        run_as: args.run_as.clone(),
        run_as_exists: account.is_some(),
        tls,
    };
    let text = template::render(&settings);
    // Our own template must load; a failure here is a bug, reported before anything is written.
    dakiya_config::Config::parse(&text, &args.config.to_string_lossy()).map_err(|e| format!("internal error: {e}"))?;
    let address = mailbox.map(|m| format!("{m}@{}", settings.domain.ascii));
    Ok(Plan {
        config: args.config,
        owner: account.map(|u| (u.uid.as_raw(), u.gid.as_raw())),
        address,
        selector: format!("rsa{}", chrono::Utc::now().format("%Y%m")),
        settings,
        replace,
    })
}

/// The mailbox name of the first user: a valid local part and mailbox (directory) name.
fn mailbox(local: &str, domain: &str) -> Result<String, String> {
    let address =
        dakiya_auth::normalize_user(&format!("{local}@{domain}")).map_err(|e| format!("--user {local:?}: {e}"))?;
    let local = address.rsplit_once('@').map(|(l, _)| l.to_string()).unwrap_or_default();
    if !dakiya_config::is_valid_mailbox_name(&local) {
        return Err(format!("--user {local:?} cannot be a mailbox name (letters, digits and . _ - =)"));
    }
    Ok(local)
}

fn refuse_existing(path: &Path, what: &str) -> Result<(), String> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(format!(
            "{what} {} already exists; not overwriting it (move it away or choose another path)",
            path.display()
        ));
    }
    Ok(())
}

/// The data directory must be missing or an empty directory: `setup` starts a new one.
fn check_data_dir(dir: &Path) -> Result<(), String> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("data directory {}: {e}", dir.display())),
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(format!(
                "data directory {} already exists and is not empty (is dakiya set up already?); \
                 not touching it — choose another --data-dir",
                dir.display()
            )),
        },
    }
}

/// Writes everything; returns the DKIM record (name, value). The password comes first: until
/// it is read, nothing exists.
fn execute(p: &Plan) -> Result<(String, String), String> {
    let password = match &p.address {
        Some(address) => Some(crate::usercli::new_password(address)?),
        None => None,
    };
    let data = &p.settings.data_dir;
    make_dir(data, 0o750)?;
    let dkim_dir = data.join("dkim");
    let record = generate_key(&dkim_dir, &p.settings.domain.ascii, &p.selector, Algorithm::Rsa)
        .map_err(|e| format!("DKIM key: {e}"))?;
    let users_file = data.join("users");
    if let (Some(address), Some(password)) = (&p.address, &password) {
        let store = dakiya_auth::UserStore::open(&users_file).map_err(|e| e.to_string())?;
        store.add(address, password).map_err(|e| e.to_string())?;
    }
    if let Some((uid, gid)) = p.owner {
        give(data, uid, gid)?;
    }
    write_config(&p.config, &template::render(&p.settings), p.replace)?;
    Ok(record)
}

/// Creates `dir` (and missing parents) with `mode`; an existing empty one gets the mode.
fn make_dir(dir: &Path, mode: u32) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)))
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Gives `dir` and everything in it (all made by `setup` a moment ago) to `uid`:`gid`.
fn give(dir: &Path, uid: u32, gid: u32) -> Result<(), String> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).map_err(|e| format!("cannot chown {}: {e}", dir.display()))?;
    if std::fs::symlink_metadata(dir).map(|m| m.is_dir()).unwrap_or(false) {
        for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            give(&entry.map_err(|e| format!("{}: {e}", dir.display()))?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Writes the configuration (mode 0644), making its directory: never over an existing file,
/// except the package's placeholder when `replace` (written beside it, then renamed over it).
fn write_config(path: &Path, text: &str, replace: bool) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        make_dir(dir, 0o755)?;
    }
    let target = if replace { path.with_extension("dakiya-setup.tmp") } else { path.to_path_buf() };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&target)
        .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    if replace {
        std::fs::rename(&target, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
    }
    Ok(())
}

/// What was done, the next steps and the DNS records.
fn report(p: &Plan, dkim: &(String, String)) {
    let s = &p.settings;
    println!("Set up {} with host name {}:", s.domain.shown(), s.hostname.shown());
    println!("  configuration  {}", p.config.display());
    println!("  data directory {} (mode 0750{})", s.data_dir.display(), owner_note(p));
    println!(
        "  DKIM key       {}",
        s.data_dir.join("dkim").join(&s.domain.ascii).join(format!("{}.key", p.selector)).display()
    );
    if let Some(address) = &p.address {
        println!("  user           {address} (postmaster and abuse go to it)");
    }
    let config = p.config.display();
    println!("\nNext steps:");
    let mut step = 0;
    let mut next = |text: String| {
        step += 1;
        println!("  {step}. {text}");
    };
    if p.owner.is_none() {
        next(format!(
            "create the account {0:?} (`useradd --system --home-dir {1} --shell /usr/sbin/nologin {0}`), \
             `chown -R {0}: {1}` and uncomment `user` in {config}",
            s.run_as,
            s.data_dir.display()
        ));
    }
    next("publish the DNS records below; run `dakiya dns DOMAIN` for the records".replace("DOMAIN", &s.domain.ascii));
    if s.tls.is_none() {
        next(format!("get a certificate for {} and set [tls] cert and key in {config}", s.hostname.ascii));
    }
    if p.address.is_none() {
        next(format!("add a user: dakiya user add --config {config} you@{}", s.domain.ascii));
    }
    next(format!("check the configuration: dakiya check-config {config}"));
    next(format!("start the server: systemctl enable --now dakiya (or: dakiya serve --config {config})"));
    println!("\nDNS records for {}:", s.domain.shown());
    for line in records::basic(&s.domain, &s.hostname, dkim) {
        println!("  {line}");
    }
    println!("  (and a PTR record for each address of this server naming {})", s.hostname.ascii);
}

fn owner_note(p: &Plan) -> String {
    match p.owner {
        Some(_) => format!(", owned by {}", p.settings.run_as),
        None => format!(", owned by root until {} exists", p.settings.run_as),
    }
}
