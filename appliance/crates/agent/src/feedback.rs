//! The feedback schedule: after which agent actions a person is asked for feedback.
//!
//! This is exactly the seeds' `RLManager.should_prompt_feedback` rule: early actions are the
//! most informative, so every one of actions 1–5 is prompted, then every 5th action up to 25
//! (10, 15, 20, 25), then every 25th (50, 75, 100, …). Nothing is prompted before the first
//! action, and nothing at all when human-in-the-loop feedback is disabled (per profile or per
//! session).

/// Whether to ask for feedback after the `action_count`-th action (counted from 1) of a session.
///
/// `enabled` is the human-in-the-loop switch; when false the answer is always `false`.
pub fn should_prompt_feedback(enabled: bool, action_count: u64) -> bool {
    if !enabled {
        return false;
    }
    match action_count {
        0 => false,
        1..=5 => true,
        6..=25 => action_count.is_multiple_of(5),
        _ => action_count.is_multiple_of(25),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts up to 100 the seeds' rule prompts at, written out by hand.
    const PROMPTS_UP_TO_100: [u64; 12] = [1, 2, 3, 4, 5, 10, 15, 20, 25, 50, 75, 100];

    /// An independent statement of the rule: the explicit set up to 100, then counting up in
    /// steps of 25.
    fn expected(count: u64) -> bool {
        if count <= 100 {
            PROMPTS_UP_TO_100.contains(&count)
        } else {
            (125..=count).step_by(25).last() == Some(count)
        }
    }

    #[test]
    fn every_count_from_1_to_1000_follows_the_schedule() {
        for count in 1..=1000u64 {
            assert_eq!(
                should_prompt_feedback(true, count),
                expected(count),
                "enabled, action {count}"
            );
            assert!(
                !should_prompt_feedback(false, count),
                "disabled must never prompt (action {count})"
            );
        }
    }

    #[test]
    fn exact_prompts_in_the_first_hundred_actions() {
        let prompts: Vec<u64> = (1..=100)
            .filter(|&n| should_prompt_feedback(true, n))
            .collect();
        assert_eq!(prompts, PROMPTS_UP_TO_100);
    }

    #[test]
    fn prompts_from_101_to_1000_are_every_25th() {
        let prompts: Vec<u64> = (101..=1000)
            .filter(|&n| should_prompt_feedback(true, n))
            .collect();
        let every_25th: Vec<u64> = (5..=40).map(|k| k * 25).collect();
        assert_eq!(prompts, every_25th);
        assert_eq!(prompts.len(), 36);
    }

    #[test]
    fn never_before_the_first_action() {
        assert!(!should_prompt_feedback(true, 0));
        assert!(!should_prompt_feedback(false, 0));
    }

    #[test]
    fn large_counts_do_not_overflow() {
        assert!(!should_prompt_feedback(true, u64::MAX));
        assert!(should_prompt_feedback(true, u64::MAX - (u64::MAX % 25)));
    }
}
