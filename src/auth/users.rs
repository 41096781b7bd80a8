//! Local listener accounts for stations without a backend: `auth.users_file` holds one
//! `user:hash` line per account, the hash an Argon2 PHC string (`$argon2id$v=19$m=…`, as
//! `argon2 SALT -id -e` prints it), never a password in plain text. The file is read at each
//! login on the executor's helper thread, with the hashing, so edits apply at once and a
//! shard never waits on the disk or the hash.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Whether `password` is `user`'s in the accounts `text`. Blank lines and `#` comments are
/// skipped; a line whose hash is not an Argon2 PHC string matches nobody.
pub fn verify(text: &str, user: &str, password: &str) -> bool {
    let Some(hash) = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .find_map(|(name, hash)| (name == user).then_some(hash))
    else {
        // As slow as a wrong password, so timing does not tell which accounts exist.
        if let Ok(dummy) = PasswordHash::new(dummy_hash()) {
            let _ = Argon2::default().verify_password(password.as_bytes(), &dummy);
        }
        return false;
    };
    match PasswordHash::new(hash) {
        Ok(parsed) if parsed.algorithm.as_str().starts_with("argon2") => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        _ => {
            tracing::warn!(
                user = %crate::logging::escape(user),
                "users_file: this account's hash is not an Argon2 PHC string; nobody can log in with it"
            );
            false
        }
    }
}

/// A hash with the default costs that no password is checked against for real.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::from_b64("bm8tc3VjaC11c2Vy").expect("a valid salt");
        Argon2::default()
            .hash_password(b"no such user", &salt)
            .map(|hash| hash.to_string())
            .unwrap_or_default()
    })
}

/// Reads the accounts file at `path` and checks the credentials, off the executor's thread.
pub async fn check(path: &str, user: &str, password: &str) -> std::io::Result<bool> {
    let (path, user, password) = (path.to_string(), user.to_string(), password.to_string());
    glommio::executor()
        .spawn_blocking(move || {
            let text = std::fs::read_to_string(&path)?;
            Ok(verify(&text, &user, &password))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cheap hash (tests only; real ones use the defaults or stronger).
    fn hash(password: &str) -> String {
        let params = argon2::Params::new(8, 1, 1, None).unwrap();
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::from_b64("c29tZXNhbHRzYWx0").unwrap();
        argon
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn accounts_match_only_their_own_password() {
        let text = format!(
            "# listeners\n\nalice:{}\nbob:{}\ncarol:plaintext\n",
            hash("wonder:land"),
            hash("builder")
        );
        assert!(verify(&text, "alice", "wonder:land"));
        assert!(verify(&text, "bob", "builder"));
        assert!(!verify(&text, "alice", "builder"));
        assert!(!verify(&text, "bob", ""));
        assert!(!verify(&text, "mallory", "builder"));
        // A password in plain text is no hash.
        assert!(!verify(&text, "carol", "plaintext"));
        assert!(!verify("", "alice", "x"));
    }
}
