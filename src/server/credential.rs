//! What pgsplit logs in to the servers with, per user: a password or md5
//! hash from the configuration, or what a client proved at its own login
//! (its md5 hash, or its SCRAM keys: pass-through). Read at every server
//! login, so a client's login with a changed password serves the next
//! server connections without a reload.

use crate::secret::ScramKeys;
use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// One user's login secret for the servers.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// Answers any method the server asks for.
    Password(String),
    /// `md5...` as pg_authid keeps it: answers md5 requests only.
    Md5Hash(String),
    /// A client's proved keys: answers SCRAM-SHA-256 requests of servers
    /// with the same verifier.
    Scram(ScramKeys),
}

impl Credential {
    /// Its metric label (`pgsplit_server_logins_total`).
    pub fn label(&self) -> &'static str {
        match self {
            Credential::Password(_) => "password",
            Credential::Md5Hash(_) => "md5_hash",
            Credential::Scram(_) => "scram_keys",
        }
    }

    /// What it is, for errors and logs: never the secret.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Password(_) => "a password",
            Credential::Md5Hash(_) => "only an md5 hash",
            Credential::Scram(_) => "only the SCRAM keys a client proved",
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({})", self.kind())
    }
}

/// A user's credential: the configured one wins over one clients proved.
#[derive(Default)]
pub struct CredentialSlot {
    configured: ArcSwapOption<Credential>,
    learned: ArcSwapOption<Credential>,
}

impl CredentialSlot {
    /// What the next server login uses (`None`: nothing known yet).
    pub fn get(&self) -> Option<Arc<Credential>> {
        self.configured
            .load_full()
            .or_else(|| self.learned.load_full())
    }
}

impl std::fmt::Debug for CredentialSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CredentialSlot({:?})", self.get())
    }
}

/// Every user's slot. One for the life of the process, so what clients
/// proved survives a reload, and pools keep their slot across reloads.
#[derive(Default)]
pub struct Keyring {
    slots: Mutex<HashMap<String, Arc<CredentialSlot>>>,
}

impl Keyring {
    /// `user`'s slot, made empty on first use.
    pub fn slot(&self, user: &str) -> Arc<CredentialSlot> {
        self.slots
            .lock()
            .entry(user.to_string())
            .or_default()
            .clone()
    }

    /// Installs a configuration's credentials: these users get theirs,
    /// every other user's configured one is dropped (what clients proved
    /// stays). Each slot goes straight from its old value to its new one,
    /// so a login meanwhile never finds a configured user without one.
    pub fn configure(&self, configured: Vec<(String, Credential)>) {
        let mut configured: HashMap<String, Credential> = configured.into_iter().collect();
        let mut slots = self.slots.lock();
        for (user, slot) in slots.iter() {
            slot.configured.store(configured.remove(user).map(Arc::new));
        }
        for (user, credential) in configured {
            let slot = slots.entry(user).or_default();
            slot.configured.store(Some(Arc::new(credential)));
        }
    }

    /// Keeps what `user`'s client proved, for the next server logins.
    pub fn learn(&self, user: &str, credential: Credential) {
        let slot = self.slot(user);
        let known = slot.learned.load();
        if known.as_deref() != Some(&credential) {
            slot.learned.store(Some(Arc::new(credential)));
        }
    }

    /// Whether servers can be logged in to as `user` now (else warming
    /// its pools up would only fail).
    pub fn can_log_in(&self, user: &str) -> bool {
        self.slots
            .lock()
            .get(user)
            .is_some_and(|s| s.get().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_credentials_win_and_follow_reloads_learned_ones_stay() {
        let keyring = Keyring::default();
        let slot = keyring.slot("alice");
        assert!(slot.get().is_none());
        assert!(!keyring.can_log_in("alice"));
        keyring.learn("alice", Credential::Md5Hash("md5x".into()));
        assert_eq!(
            slot.get().as_deref(),
            Some(&Credential::Md5Hash("md5x".into()))
        );
        keyring.configure(vec![("alice".into(), Credential::Password("pw".into()))]);
        assert_eq!(
            slot.get().as_deref(),
            Some(&Credential::Password("pw".into()))
        );
        // A reload without alice in [[users]]: what her client proved again.
        keyring.configure(vec![]);
        assert_eq!(
            slot.get().as_deref(),
            Some(&Credential::Md5Hash("md5x".into()))
        );
        assert!(Arc::ptr_eq(&slot, &keyring.slot("alice")));
        assert!(!format!("{slot:?}").contains("pw"));
    }
}
