//! A user's desktop limits (their overrides over the appliance defaults) and where their
//! persistent Chrome profile lives.

use zigral_init_protocol::GroupLimits;
use zigral_store::UserRecord;

use crate::config::DesktopSettings;

/// The cgroup limits a desktop of `user` gets.
pub fn effective_limits(cfg: &DesktopSettings, user: &UserRecord) -> GroupLimits {
    let l = &user.limits;
    GroupLimits {
        millicpus: Some(l.millicpus.unwrap_or(cfg.millicpus)),
        memory: Some(
            l.memory_mib
                .unwrap_or(cfg.memory_mib)
                .saturating_mul(1024 * 1024),
        ),
        pids: Some(l.pids.unwrap_or(cfg.pids)),
    }
}

/// The persistent Chrome profile of user `id`, relative to the state dir (a zigral-init
/// spawn param; user ids are hex).
pub fn profile_dir(id: &str) -> String {
    format!("profiles/{id}/chrome")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_overrides_win_and_profile_dirs_are_valid_params() {
        let cfg = DesktopSettings::default();
        let mut u = UserRecord {
            id: "0123abcd".into(),
            username: "u".into(),
            password_hash: String::new(),
            is_admin: false,
            created_at: 0,
            disabled: false,
            persistent_profile: false,
            limits: Default::default(),
        };
        let d = effective_limits(&cfg, &u);
        assert_eq!(d.millicpus, Some(2000));
        assert_eq!(d.memory, Some(4096 * 1024 * 1024));
        u.limits.memory_mib = Some(512);
        u.limits.millicpus = Some(500);
        let l = effective_limits(&cfg, &u);
        assert_eq!((l.millicpus, l.memory), (Some(500), Some(512 << 20)));
        assert_eq!(l.pids, Some(cfg.pids));
        assert_eq!(
            zigral_init_protocol::check_param_value(&profile_dir(&u.id)),
            Ok(())
        );
    }
}
