//! The macros sent before each stage, named and filled as Postfix does (docs/milter.md).

use std::net::SocketAddr;

/// What the session knows about its client, for the macros and `SMFIC_CONNECT`/`HELO`.
#[derive(Clone, Default)]
pub struct Facts {
    /// Our host name (`j`).
    pub hostname: String,
    /// The listener's role (`{daemon_name}`) and address (`{daemon_addr}`).
    pub daemon_name: String,
    pub daemon_addr: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
    /// The client's forward-confirmed name, when screening found one.
    pub client_name: Option<String>,
    pub helo: String,
    /// TLS version and cipher, once TLS is up.
    pub tls: Option<(String, String)>,
    /// The authenticated user, if any, and the SASL mechanism last tried.
    pub auth_user: Option<String>,
    pub auth_type: Option<&'static str>,
}

type Pairs = Vec<(String, String)>;

fn pair(out: &mut Pairs, name: &str, value: impl Into<String>) {
    out.push((name.to_string(), value.into()));
}

impl Facts {
    /// The client's name as the milter gets it: `unknown` when not confirmed (Postfix's
    /// convention), and its address in brackets for `_`.
    pub fn name(&self) -> String {
        self.client_name.clone().unwrap_or_else(|| "unknown".to_string())
    }

    /// For `SMFIC_CONNECT` (`'C'`).
    pub fn connect(&self) -> Pairs {
        let mut m = Vec::new();
        pair(&mut m, "j", &self.hostname);
        pair(&mut m, "{daemon_name}", &self.daemon_name);
        if let Some(a) = self.daemon_addr {
            pair(&mut m, "{daemon_addr}", a.ip().to_canonical().to_string());
        }
        pair(&mut m, "v", "dakiya");
        if let Some(p) = self.peer {
            let ip = p.ip().to_canonical().to_string();
            pair(&mut m, "_", format!("{} [{ip}]", self.name()));
            pair(&mut m, "{client_addr}", ip);
            pair(&mut m, "{client_port}", p.port().to_string());
        }
        pair(&mut m, "{client_name}", self.name());
        pair(&mut m, "{client_ptr}", self.name());
        m
    }

    /// For `SMFIC_HELO` (`'H'`): TLS, known by then.
    pub fn helo(&self) -> Pairs {
        let mut m = Vec::new();
        if let Some((version, cipher)) = &self.tls {
            pair(&mut m, "{tls_version}", version);
            pair(&mut m, "{cipher}", cipher);
        }
        m
    }

    /// For `SMFIC_MAIL` (`'M'`): authentication and the sender.
    pub fn mail(&self, sender: &str) -> Pairs {
        let mut m = Vec::new();
        if let Some(user) = &self.auth_user {
            if let Some(mechanism) = self.auth_type {
                pair(&mut m, "{auth_type}", mechanism);
            }
            pair(&mut m, "{auth_authen}", user);
        }
        pair(&mut m, "{mail_addr}", sender);
        m
    }
}

/// For `SMFIC_RCPT` (`'R'`).
pub fn rcpt(address: &str) -> Pairs {
    vec![("{rcpt_addr}".to_string(), address.to_string())]
}

/// For `SMFIC_DATA`, `SMFIC_EOH` and `SMFIC_BODYEOB`: the queue id (`i`).
pub fn queue_id(id: &str) -> Pairs {
    vec![("i".to_string(), id.to_string())]
}
