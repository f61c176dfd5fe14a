//! Password hashing: argon2id in PHC string format.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::AuthError;
use crate::name::check_password;

/// The argon2id parameters for new hashes: 19 MiB of memory, 2 passes, 1 lane.
///
/// This is OWASP's baseline for argon2id (Password Storage Cheat Sheet: m=19456 KiB, t=2,
/// p=1) and the argon2 crate's default. One verification costs about 15 ms on one core of
/// the development machine in a release build (see docs/auth.md): cheap enough for a mail
/// server that checks a password once per SMTP session, while an offline attacker pays
/// 19 MiB and two passes per guess. Existing hashes keep the parameters they were made
/// with (they are in the PHC string), so raising these later needs no migration.
pub const ARGON2_PARAMS: Params = match Params::new(19 * 1024, 2, 1, None) {
    Ok(p) => p,
    Err(_) => panic!("invalid argon2 parameters"),
};

/// Most memory a stored hash may ask for, in KiB (256 MiB). A hand-edited users file must
/// not be able to make every login allocate gigabytes.
const MAX_M_COST: u32 = 256 * 1024;
/// Most passes a stored hash may ask for.
const MAX_T_COST: u32 = 16;
/// Most lanes a stored hash may ask for.
const MAX_P_COST: u32 = 16;

fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, ARGON2_PARAMS)
}

/// Hashes a password with argon2id, [`ARGON2_PARAMS`] and a random 16-byte salt from the
/// operating system; returns the PHC string (`$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`).
///
/// Refuses passwords that [`check_password`](crate::check_password) refuses.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    check_password(password)?;
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Checks that `phc` is an argon2id hash this crate can verify within the resource caps;
/// the error is a reason fit for [`AuthError::Malformed`].
pub(crate) fn check_phc(phc: &str) -> Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("not a PHC hash string ({e})"))?;
    if hash.algorithm != Algorithm::Argon2id.ident() {
        return Err(format!("hash algorithm is {}, not argon2id", hash.algorithm));
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("hash string has no salt or no hash".into());
    }
    let params = Params::try_from(&hash).map_err(|e| format!("bad argon2 parameters ({e})"))?;
    if params.m_cost() > MAX_M_COST || params.t_cost() > MAX_T_COST || params.p_cost() > MAX_P_COST {
        return Err(format!("argon2 parameters exceed m={MAX_M_COST}, t={MAX_T_COST}, p={MAX_P_COST}"));
    }
    Ok(())
}

/// Verifies `password` against a PHC string in constant time (the final comparison is
/// `subtle`'s `ct_eq`, inside `password-hash`).
pub(crate) fn verify_phc(phc: &str, password: &str) -> Result<bool, AuthError> {
    let hash = PasswordHash::new(phc).map_err(|e| AuthError::Hash(e.to_string()))?;
    match hasher().verify_password(password.as_bytes(), &hash) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(AuthError::Hash(e.to_string())),
    }
}

/// Spends the same time as checking a real user's password, for an unknown user (or a
/// name or password that cannot be valid), so that timing does not tell which names exist.
pub(crate) fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = DUMMY.get_or_init(|| {
        // A hash of a random secret nobody knows, made once per process with the current
        // parameters, so it costs exactly what a freshly made real hash costs.
        let salt = SaltString::generate(&mut OsRng);
        let secret = salt.as_str().to_owned();
        hasher().hash_password(secret.as_bytes(), &salt).map(|h| h.to_string()).unwrap_or_default()
    });
    // Too-long or NUL-holding inputs are still hashed: argon2 accepts them, and refusing
    // early would only make those attempts faster.
    let _ = verify_phc(phc, password);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(check_phc(&phc).is_ok());
        assert!(verify_phc(&phc, "correct horse").unwrap());
        assert!(!verify_phc(&phc, "correct horsf").unwrap());
        assert!(!verify_phc(&phc, "").unwrap());
    }

    #[test]
    fn salts_differ() {
        assert_ne!(hash_password("same").unwrap(), hash_password("same").unwrap());
    }

    #[test]
    fn refuses_bad_passwords() {
        assert!(matches!(hash_password(""), Err(AuthError::InvalidPassword(_))));
    }

    #[test]
    fn stored_hash_checks() {
        let ok = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
                  K3Mbjf0ltHqQy8LhzBfuAeCGYTSdmGP2tDjLT+vcgNQ";
        assert_eq!(check_phc(ok), Ok(()));
        let argon2i = ok.replace("argon2id", "argon2i");
        assert!(check_phc(&argon2i).unwrap_err().contains("not argon2id"));
        let huge = ok.replace("m=19456", "m=4194304");
        assert!(check_phc(&huge).unwrap_err().contains("exceed"));
        assert!(check_phc("plaintext").is_err());
        assert!(check_phc("$argon2id$v=19$m=19456,t=2,p=1").is_err());
    }
}
