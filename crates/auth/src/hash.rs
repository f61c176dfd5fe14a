//! Password hashing: argon2id in PHC string format.

use std::cell::RefCell;
use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, PasswordHasher, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

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
/// `subtle`'s `ct_eq`, inside `password-hash`'s `Output`).
///
/// The argon2 memory comes from [`with_blocks`]: the calling thread's own block buffer,
/// reused from one verification to the next.
pub(crate) fn verify_phc(phc: &str, password: &str) -> Result<bool, AuthError> {
    let hash = PasswordHash::new(phc).map_err(hash_error)?;
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return Err(AuthError::Hash("hash string has no salt or no hash".into()));
    };
    let algorithm = Algorithm::try_from(hash.algorithm).map_err(hash_error)?;
    let version = match hash.version {
        Some(v) => Version::try_from(v).map_err(|e| AuthError::Hash(e.to_string()))?,
        None => Version::default(),
    };
    // The output length is the stored hash's (Params::try_from takes it from there).
    let params = Params::try_from(&hash).map_err(hash_error)?;
    let mut salt_buf = [0u8; Salt::MAX_LENGTH];
    let salt = salt.decode_b64(&mut salt_buf).map_err(hash_error)?;
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = &mut out[..expected.len()];
    let argon2 = Argon2::new(algorithm, version, params.clone());
    with_blocks(params.block_count(), |blocks| {
        argon2.hash_password_into_with_memory(password.as_bytes(), salt, out, blocks)
    })
    .map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(Output::new(out).map_err(hash_error)? == expected)
}

fn hash_error(e: argon2::password_hash::Error) -> AuthError {
    AuthError::Hash(e.to_string())
}

thread_local! {
    /// This thread's argon2 memory, kept for its next verification.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `count` argon2 blocks (1 KiB each) of the calling thread's own buffer.
///
/// Why: freeing 19 MiB after every check and allocating it again lets the allocator spread
/// the buffers over its arenas (measured: 200 checks on two threads left 8 glibc arenas of
/// ~57 MiB each, 428 MiB in all). A buffer per thread, allocated once, keeps the memory at
/// one buffer per checking thread — the threads of the [`CheckPool`](crate::CheckPool) —
/// whatever the allocator does. Argon2 writes every block before reading it, so the
/// leftovers of the previous check do not matter. A stored hash asking for more memory
/// than [`ARGON2_PARAMS`] (only a hand-edited one can) gets a buffer of its own, freed
/// after use, so the kept buffer never grows beyond 19 MiB.
fn with_blocks<T>(count: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    if count > ARGON2_PARAMS.block_count() {
        return f(&mut vec![Block::default(); count]);
    }
    BLOCKS.with_borrow_mut(|blocks| {
        if blocks.len() < count {
            blocks.resize(count, Block::default());
        }
        f(&mut blocks[..count])
    })
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

    /// The reused per-thread buffer holds the previous check's state: results must not
    /// depend on it, and must match the allocating path of the argon2 crate.
    #[test]
    fn reused_memory_gives_the_same_answers() {
        use argon2::password_hash::PasswordVerifier;
        let phc = hash_password("correct horse").unwrap();
        let other = hash_password("battery staple").unwrap();
        for _ in 0..3 {
            assert!(verify_phc(&phc, "correct horse").unwrap());
            assert!(!verify_phc(&other, "correct horse").unwrap());
            assert!(verify_phc(&other, "battery staple").unwrap());
        }
        let parsed = PasswordHash::new(&phc).unwrap();
        assert!(hasher().verify_password(b"correct horse", &parsed).is_ok());
        // Smaller and larger parameters than ours, and a 64-byte output.
        for params in [Params::new(8, 1, 1, Some(16)).unwrap(), Params::new(32 * 1024, 1, 2, Some(64)).unwrap()] {
            let salt = SaltString::generate(&mut OsRng);
            let h = Argon2::new(Algorithm::Argon2id, Version::V0x13, params).hash_password(b"pw", &salt).unwrap();
            assert!(verify_phc(&h.to_string(), "pw").unwrap());
            assert!(!verify_phc(&h.to_string(), "pW").unwrap());
        }
        assert!(BLOCKS.with_borrow(|b| b.len()) <= ARGON2_PARAMS.block_count());
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
