//! Store behaviour on a real redb file: migrations, refusal of newer schemas, the tables'
//! queries, group commit under concurrency and isolation of a failing write.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use serde_json::json;
use zigral_store::*;

fn session(id: &str, owner: &str) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        owner: owner.into(),
        title: "t".into(),
        desktop: 0,
        system_prompt: Some("be helpful".into()),
        state: "idle".into(),
        created_at: now_ms(),
        updated_at: now_ms(),
        message_count: 0,
        next_seq: 0,
        agent: None,
        hitl: None,
    }
}

fn msg(text: &str) -> NewMessage {
    NewMessage {
        role: "user".into(),
        content: json!([{"type": "text", "text": text}]),
        tokens: 3,
        author: "u1".into(),
    }
}

#[tokio::test]
async fn fresh_file_gets_current_schema_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open_in(dir.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        s.create_session(session("s1", "u1")).await.unwrap();
        // Whatever the umask: only the control plane's user may read the file.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "zigral.redb mode {mode:o}");
    }
    // The writer thread holds the database until its channel closes; wait for the lock to go.
    let s = loop {
        match Store::open_in(dir.path()) {
            Ok(s) => break s,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    };
    assert!(s.get_session("s1").unwrap().is_some());
}

#[test]
fn newer_schema_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    force_schema_version(&path, SCHEMA_VERSION + 1).unwrap();
    let err = Store::open(&path).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1));
    assert!(text.contains("newer than this build supports"), "{text}");
}

#[test]
fn a_second_open_of_the_same_file_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let _a = Store::open_in(dir.path()).unwrap();
    let err = Store::open_in(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
}

#[tokio::test]
async fn messages_are_sequenced_paginated_and_visited_from_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_in(dir.path()).unwrap();
    s.create_session(session("a", "u1")).await.unwrap();
    s.create_session(session("b", "u1")).await.unwrap();
    for i in 0..25 {
        let m = s.append_message("a", msg(&format!("m{i}"))).await.unwrap();
        assert_eq!(m.seq, i);
    }
    s.append_message("b", msg("other")).await.unwrap();
    let page = s.list_messages("a", None, 10).unwrap();
    assert_eq!(
        page.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    let page = s.list_messages("a", Some(19), 10).unwrap();
    assert_eq!(
        page.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (20..25).collect::<Vec<_>>()
    );
    assert!(s.list_messages("a", Some(u64::MAX), 10).unwrap().is_empty());
    let mut seen = Vec::new();
    s.visit_messages_newest_first("a", Some(20), |m| {
        seen.push(m.seq);
        true
    })
    .unwrap();
    assert_eq!(seen, vec![24, 23, 22, 21]);
    let sess = s.get_session("a").unwrap().unwrap();
    assert_eq!((sess.message_count, sess.next_seq), (25, 25));
    let err = s.append_message("nope", msg("x")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)));
}

#[tokio::test]
async fn concurrent_appends_group_commit_and_a_bad_write_does_not_sink_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_in(dir.path()).unwrap();
    s.create_session(session("a", "u1")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            if i % 8 == 0 {
                // Fails: unknown session. Must not affect the others in its batch.
                s.append_message("missing", msg("bad")).await.map(|_| ())
            } else {
                s.append_message("a", msg(&format!("{i}")))
                    .await
                    .map(|_| ())
            }
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 56);
    let all = s.list_messages("a", None, 1000).unwrap();
    assert_eq!(all.len(), 56);
    let seqs: Vec<u64> = all.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (0..56).collect::<Vec<_>>());
}

#[tokio::test]
async fn users_tokens_actions_checkpoints_summaries_config_audit() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_in(dir.path()).unwrap();
    let u = UserRecord {
        id: "u1".into(),
        username: "alice".into(),
        password_hash: "$argon2id$...".into(),
        is_admin: false,
        created_at: 1,
        disabled: false,
        persistent_profile: false,
        limits: Default::default(),
    };
    s.create_user(u.clone()).await.unwrap();
    let dup = UserRecord {
        id: "u2".into(),
        ..u.clone()
    };
    assert!(matches!(
        s.create_user(dup).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.get_user_by_name("alice").unwrap().unwrap().id, "u1");

    let tok = TokenRecord {
        id: "t1".into(),
        user_id: "u1".into(),
        kind: TokenKind::Api,
        name: "agent".into(),
        scopes: vec!["read".into()],
        created_at: 1,
        expires_at: Some(5),
    };
    s.put_token("h1".into(), tok.clone()).await.unwrap();
    assert_eq!(s.token_by_hash("h1").unwrap().unwrap(), tok);
    assert_eq!(s.list_tokens(Some("u1"), TokenKind::Api).unwrap().len(), 1);
    assert_eq!(s.purge_expired_tokens(10).await.unwrap(), 1);
    assert!(s.token_by_id("t1").unwrap().is_none());

    s.create_session(session("a", "u1")).await.unwrap();
    s.create_session(session("ab", "u1")).await.unwrap();
    for i in 0..3 {
        let a = s
            .append_action(
                "a",
                NewAction {
                    who: "agent".into(),
                    what: json!({"click": i}),
                    result: json!({}),
                    ok: true,
                    duration_ms: 4,
                },
            )
            .await
            .unwrap();
        assert_eq!(a.seq, i);
    }
    assert_eq!(s.list_actions("a", Some(0), 10).unwrap().len(), 2);
    assert_eq!(s.last_actions("a", 2).unwrap()[0].seq, 2);

    let cp = CheckpointRecord {
        meta: CheckpointMeta {
            id: "c1".into(),
            label: "before login".into(),
            action_seq: Some(2),
            created_at: 1,
            size_bytes: 0,
            meta: json!({}),
        },
        data: json!({"cookies": [1, 2, 3]}),
    };
    let meta = s.put_checkpoint("a", cp.clone()).await.unwrap();
    assert!(meta.size_bytes > 0);
    s.put_checkpoint("ab", cp.clone()).await.unwrap();
    assert_eq!(s.list_checkpoints("a").unwrap().len(), 1);
    assert_eq!(s.get_checkpoint("a", "c1").unwrap().unwrap().data, cp.data);

    s.append_message("a", msg("x")).await.unwrap();
    let bad = SummaryRecord {
        from_seq: 0,
        to_seq: 5,
        text: "s".into(),
        tokens: 1,
        author: "u1".into(),
        created_at: 0,
    };
    assert!(matches!(
        s.put_summary("a", bad.clone()).await,
        Err(StoreError::Invalid(_))
    ));
    s.put_summary("a", SummaryRecord { to_seq: 0, ..bad })
        .await
        .unwrap();
    assert_eq!(s.latest_summary("a").unwrap().unwrap().to_seq, 0);

    s.put_config("feedback.enabled", json!(true)).await.unwrap();
    assert_eq!(s.get_config("feedback.enabled").unwrap(), Some(json!(true)));
    s.append_audit("u1", "session.create", "a", json!({}))
        .await
        .unwrap();
    s.append_audit("u1", "session.delete", "a", json!({}))
        .await
        .unwrap();
    assert_eq!(
        s.list_audit(Some(0), 10).unwrap()[0].action,
        "session.delete"
    );

    // Deleting a session removes its rows but not those of a session whose id shares a prefix.
    s.delete_session("a").await.unwrap();
    assert!(s.list_actions("a", None, 10).unwrap().is_empty());
    assert!(s.list_messages("a", None, 10).unwrap().is_empty());
    assert!(s.list_checkpoints("a").unwrap().is_empty());
    assert!(s.latest_summary("a").unwrap().is_none());
    assert_eq!(s.list_checkpoints("ab").unwrap().len(), 1);
    assert_eq!(s.list_sessions(Some("u1")).unwrap().len(), 1);
}

#[tokio::test]
async fn a_batch_of_actions_is_one_commit_and_all_or_nothing() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_in(dir.path()).unwrap();
    s.create_session(session("b", "u1")).await.unwrap();
    s.append_action(
        "b",
        NewAction {
            who: "agent".into(),
            what: json!({"first": true}),
            result: json!({}),
            ok: true,
            duration_ms: 1,
        },
    )
    .await
    .unwrap();
    let batch: Vec<NewAction> = (0..20)
        .map(|i| NewAction {
            who: "agent".into(),
            what: json!({"index": i}),
            result: json!(null),
            ok: true,
            duration_ms: 2,
        })
        .collect();
    let before = s.stats().commits.load(Ordering::Relaxed);
    let recs = s.append_actions("b", batch).await.unwrap();
    assert_eq!(s.stats().commits.load(Ordering::Relaxed) - before, 1);
    let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<u64>>());
    assert_eq!(s.list_actions("b", None, 100).unwrap().len(), 21);
    // A missing session: an error, and nothing is written.
    let e = s
        .append_actions(
            "gone",
            vec![NewAction {
                who: "agent".into(),
                what: json!({}),
                result: json!(null),
                ok: true,
                duration_ms: 0,
            }],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    assert!(s.list_actions("gone", None, 10).unwrap().is_empty());
}

#[tokio::test]
async fn a_schema_1_file_gains_the_desktops_table_and_old_users_read_with_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    force_schema_version(&path, 1).unwrap();
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert!(s.list_desktops().unwrap().is_empty());
    assert!(
        s.list_agents(None).unwrap().is_empty(),
        "v3 added the agents table"
    );
    let d = DesktopRecord {
        n: 3,
        owner: Some("u1".into()),
        sessions: vec!["s1".into()],
        state: DesktopState::Starting,
        persistent: false,
        lease: Some("abc".into()),
        millicpus: Some(2000),
        memory_bytes: Some(1 << 32),
        pids: Some(4096),
        created_at: 1,
        assigned_at: Some(1),
    };
    s.put_desktop(d.clone()).await.unwrap();
    let ready = DesktopRecord {
        state: DesktopState::Ready,
        ..d.clone()
    };
    s.put_desktop(ready.clone()).await.unwrap();
    assert_eq!(s.get_desktop(3).unwrap(), Some(ready.clone()));
    assert_eq!(s.list_desktops().unwrap(), vec![ready]);
    s.delete_desktop(3).await.unwrap();
    s.delete_desktop(3).await.unwrap();
    assert_eq!(s.get_desktop(3).unwrap(), None);

    // A user written before version 2 reads with the new fields at their defaults.
    let old: UserRecord = serde_json::from_value(json!({
        "id": "u1", "username": "old", "password_hash": "h", "is_admin": false, "created_at": 1
    }))
    .unwrap();
    assert!(!old.disabled && !old.persistent_profile);
    assert_eq!(old.limits, UserLimits::default());
    s.create_user(old).await.unwrap();
    let u = s
        .update_user("u1", |u| {
            u.disabled = true;
            u.username = "renamed".into();
            u.limits.max_desktops = Some(1);
        })
        .await
        .unwrap();
    assert!(u.disabled);
    assert_eq!(
        u.username, "old",
        "the user name never changes through update_user"
    );
    assert_eq!(u.limits.max_desktops, Some(1));
    assert!(matches!(
        s.update_user("nobody", |_| {}).await,
        Err(StoreError::NotFound(_))
    ));
    for (hash, id, kind) in [("h1", "t1", TokenKind::Login), ("h2", "t2", TokenKind::Api)] {
        s.put_token(
            hash.into(),
            TokenRecord {
                id: id.into(),
                user_id: "u1".into(),
                kind,
                name: "x".into(),
                scopes: vec![],
                created_at: 1,
                expires_at: None,
            },
        )
        .await
        .unwrap();
    }
    assert_eq!(s.revoke_logins("u1").await.unwrap(), 1);
    assert!(s.token_by_hash("h1").unwrap().is_none());
    assert!(s.token_by_hash("h2").unwrap().is_some(), "API tokens stay");
}

fn profile(id: &str, owner: &str) -> AgentProfileRecord {
    AgentProfileRecord {
        id: id.into(),
        owner: owner.into(),
        name: format!("agent {id}"),
        system_prompt: "drive the browser".into(),
        provider: AgentProvider {
            generation: "computer_20251124".into(),
            model: "m".into(),
            base_url: None,
            max_tokens: 1024,
            thinking: None,
            max_retries: 2,
            timeout_secs: 60,
            api_key_env: None,
        },
        start_url: None,
        allowed_domains: vec!["example.com".into()],
        max_steps: 10,
        context_budget_tokens: 50_000,
        keep_images: 3,
        hitl: HitlSettings::default(),
        risky_patterns: vec![],
        api_key_set: false,
        created_at: 0,
        updated_at: 0,
    }
}

#[tokio::test]
async fn agent_profiles_are_crud_and_a_used_profile_cannot_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_in(dir.path()).unwrap();
    let a = s.create_agent(profile("a1", "u1")).await.unwrap();
    assert!(a.created_at > 0);
    assert!(matches!(
        s.create_agent(profile("a1", "u1")).await,
        Err(StoreError::Conflict(_))
    ));
    s.create_agent(profile("a2", "u2")).await.unwrap();
    assert_eq!(s.list_agents(None).unwrap().len(), 2);
    assert_eq!(s.list_agents(Some("u2")).unwrap()[0].id, "a2");
    let mut changed = profile("a1", "someone-else");
    changed.max_steps = 99;
    let r = s.replace_agent(changed).await.unwrap();
    assert_eq!((r.max_steps, r.owner.as_str()), (99, "u1"), "owner is kept");

    s.create_session(session("s1", "u1")).await.unwrap();
    assert!(matches!(
        s.set_session_agent("s1", Some("nope".into())).await,
        Err(StoreError::NotFound(_))
    ));
    let sess = s.set_session_agent("s1", Some("a1".into())).await.unwrap();
    assert_eq!(sess.agent.as_deref(), Some("a1"));
    assert!(matches!(
        s.delete_agent("a1").await,
        Err(StoreError::Conflict(_))
    ));
    s.set_session_agent("s1", None).await.unwrap();
    s.delete_agent("a1").await.unwrap();
    assert!(s.get_agent("a1").unwrap().is_none());
}

#[tokio::test]
async fn agent_turns_are_numbered_per_session_and_go_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_in(dir.path()).unwrap();
    s.create_session(session("s1", "u1")).await.unwrap();
    let turn = |steps| AgentTurnRecord {
        turn: 99,
        profile: "a1".into(),
        started_at: 1,
        ended_at: 2,
        steps,
        requests: 1,
        outcome: "end_turn".into(),
        error: None,
        usage: TokenUsage {
            input_tokens: 100,
            output_tokens: 5,
            ..Default::default()
        },
        context_tokens: 100,
    };
    assert_eq!(s.append_agent_turn("s1", turn(1)).await.unwrap().turn, 0);
    assert_eq!(s.append_agent_turn("s1", turn(2)).await.unwrap().turn, 1);
    assert!(s.append_agent_turn("nope", turn(1)).await.is_err());
    let all = s.list_agent_turns("s1", None, 10).unwrap();
    assert_eq!(all.iter().map(|t| t.steps).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(s.list_agent_turns("s1", Some(0), 10).unwrap().len(), 1);
    s.delete_session("s1").await.unwrap();
    assert!(s.list_agent_turns("s1", None, 10).unwrap().is_empty());
}
