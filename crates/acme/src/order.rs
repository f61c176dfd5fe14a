//! One certificate order (RFC 8555 §7.4): the account (created on first use and kept in the
//! state directory), an order for every configured name, the HTTP-01 answers published for
//! the CA to fetch (§8.3) and withdrawn afterwards, a fresh key and CSR, and the chain.

use crate::error::AcmeError;
use crate::http::Https;
use crate::{Host, Settings, store};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, Order,
    OrderStatus, RetryPolicy,
};
use std::time::Duration;

/// A certificate chain (PEM, leaf first) and its private key (PKCS#8 PEM).
#[derive(Debug, Clone)]
pub struct Issued {
    /// The chain as the CA sent it.
    pub chain_pem: String,
    /// The key the CSR was made with.
    pub key_pem: String,
}

/// How long the CA may take to validate the challenges and to issue.
const POLL: RetryPolicy = RetryPolicy::new().initial_delay(Duration::from_millis(250)).timeout(Duration::from_secs(90));

/// Runs one order to the end. Challenge answers published on `host` are withdrawn whatever
/// the outcome.
pub async fn issue(settings: &Settings, host: &dyn Host) -> Result<Issued, AcmeError> {
    let account = account(settings).await?;
    let ids: Vec<Identifier> = settings.names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(|source| AcmeError::Order { step: "new order", source })?;
    let mut tokens = Vec::new();
    let outcome = validate(&mut order, host, &mut tokens, &settings.names).await;
    for t in &tokens {
        host.withdraw(t);
    }
    outcome?;
    finish(&mut order, &settings.names).await
}

/// Loads the account from the state directory, or creates one and stores it (0600).
async fn account(settings: &Settings) -> Result<Account, AcmeError> {
    let file = store::account_file(&settings.state_dir);
    let builder = || Https::new(settings.ca_file.as_deref()).map(|h| Account::builder_with_http(Box::new(h)));
    let wrap = |source| AcmeError::Account { directory: settings.directory.clone(), source };
    if let Some(creds) = stored_credentials(&file, &settings.directory) {
        return builder()?.from_credentials(creds).await.map_err(wrap);
    }
    let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
    let new = NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
    let (account, creds) = builder()?.create(&new, settings.directory.clone(), None).await.map_err(wrap)?;
    let json = serde_json::to_vec(&StoredAccount { directory: &settings.directory, credentials: &creds })
        .map_err(|e| AcmeError::File { path: file.clone(), source: e.into() })?;
    store::write_atomic(&file, &json, 0o600).map_err(|source| AcmeError::File { path: file.clone(), source })?;
    tracing::info!(directory = %settings.directory, file = %file.display(), "ACME account created");
    Ok(account)
}

#[derive(serde::Serialize)]
struct StoredAccount<'a> {
    directory: &'a str,
    credentials: &'a AccountCredentials,
}

/// The stored credentials, if they are for `directory` (another CA needs another account).
fn stored_credentials(file: &std::path::Path, directory: &str) -> Option<AccountCredentials> {
    let text = std::fs::read(file).ok()?;
    let mut v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    if v.get("directory")?.as_str()? != directory {
        return None;
    }
    serde_json::from_value(v.get_mut("credentials")?.take()).ok()
}

/// Publishes every pending HTTP-01 answer, tells the CA, and waits for the order to be ready.
async fn validate(
    order: &mut Order,
    host: &dyn Host,
    tokens: &mut Vec<String>,
    names: &[String],
) -> Result<(), AcmeError> {
    let step = |step| move |source| AcmeError::Order { step, source };
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.map_err(step("authorization"))?;
        if authz.status == AuthorizationStatus::Valid {
            continue;
        }
        let name = format!("{}", authz.identifier());
        let mut challenge = authz.challenge(ChallengeType::Http01).ok_or(AcmeError::NoHttp01 { name })?;
        host.publish(&challenge.token, challenge.key_authorization().as_str());
        tokens.push(challenge.token.clone());
        challenge.set_ready().await.map_err(step("challenge ready"))?;
    }
    let status = match order.poll_ready(&POLL).await {
        Ok(status) => status,
        // The order's problem document (RFC 8555 §7.1.3 "error") tells why validation failed.
        Err(instant_acme::Error::Api(p)) => {
            return Err(AcmeError::Challenge { name: names.join(", "), detail: p.to_string() });
        }
        Err(e) => return Err(step("waiting for validation")(e)),
    };
    if status == OrderStatus::Ready {
        return Ok(());
    }
    Err(why_invalid(order).await)
}

/// The first challenge error the CA reports for an invalid order.
async fn why_invalid(order: &mut Order) -> AcmeError {
    let mut authzs = order.authorizations();
    while let Some(Ok(authz)) = authzs.next().await {
        let name = format!("{}", authz.identifier());
        for c in &authz.challenges {
            if let Some(p) = &c.error {
                let detail = p.detail.clone().unwrap_or_else(|| p.r#type.clone().unwrap_or_default());
                return AcmeError::Challenge { name, detail };
            }
        }
    }
    AcmeError::Invalid("no challenge error given".into())
}

/// A new key and CSR for `names`, finalization, and the chain.
async fn finish(order: &mut Order, names: &[String]) -> Result<Issued, AcmeError> {
    let key = rcgen::KeyPair::generate().map_err(AcmeError::Csr)?;
    let params = rcgen::CertificateParams::new(names.to_vec()).map_err(AcmeError::Csr)?;
    let csr = params.serialize_request(&key).map_err(AcmeError::Csr)?;
    order.finalize_csr(csr.der()).await.map_err(|source| AcmeError::Order { step: "finalize", source })?;
    let chain_pem =
        order.poll_certificate(&POLL).await.map_err(|source| AcmeError::Order { step: "certificate", source })?;
    Ok(Issued { chain_pem, key_pem: key.serialize_pem() })
}
