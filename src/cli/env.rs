//! The environment a command sees. A command run by the store's holder (see `control`) sees the
//! environment of the `tessera` that asked for it, not the holder's, so commands read variables
//! through [`Env`] rather than `std::env`.

use std::collections::BTreeMap;

/// A snapshot of environment variables.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Env(BTreeMap<String, String>);

impl Env {
    /// This process's environment (variables that are not UTF-8 are left out).
    pub(crate) fn process() -> Self {
        Self(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        )
    }

    /// The part a holder needs to run a command as this process would: the Hugging Face and
    /// Tessera variables (endpoint, token, offline mode) and `HOME` (where the token file is).
    /// Nothing else travels, so the holder's own settings (proxies, locale) stay its own.
    pub(crate) fn forwarded(&self) -> Self {
        let keep = |k: &str| k.starts_with("HF_") || k.starts_with("TESSERA_") || k == "HOME";
        Self(self.0.iter().filter(|(k, _)| keep(k)).map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// A variable's value, if set.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Whether a variable is set to a true value (`1`, `true`, `yes`, `on`).
    pub(crate) fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| {
            matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_keeps_only_hub_and_tessera_variables() {
        let env =
            Env([("HF_TOKEN", "t"), ("PATH", "/bin"), ("TESSERA_LOG", "info"), ("HOME", "/root")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect());
        let sent = env.forwarded();
        assert_eq!(sent.get("HF_TOKEN"), Some("t"));
        assert_eq!(sent.get("HOME"), Some("/root"));
        assert_eq!(sent.get("PATH"), None);
        assert!(!sent.flag("HF_HUB_OFFLINE"));
    }
}
