//! The ACME HTTP-01 challenge answers (RFC 8555 §8.3) an `http` listener serves at
//! `/.well-known/acme-challenge/TOKEN`. Filled by the ACME client (`acme.rs`): it puts the key
//! authorization of each pending challenge here and takes it out when the order is done.

use std::collections::HashMap;
use std::sync::RwLock;

/// Token → key authorization, shared by every `http` listener and the ACME client.
#[derive(Debug, Default)]
pub struct AcmeChallenges(RwLock<HashMap<String, String>>);

impl AcmeChallenges {
    /// The key authorization for `token`, if a challenge for it is pending.
    pub fn get(&self, token: &str) -> Option<String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(token).cloned()
    }

    /// Starts answering `token` with `key_authorization`.
    pub fn insert(&self, token: String, key_authorization: String) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).insert(token, key_authorization);
    }

    /// Stops answering `token`.
    pub fn remove(&self, token: &str) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).remove(token);
    }
}
