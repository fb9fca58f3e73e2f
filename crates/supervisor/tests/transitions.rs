//! Table-driven tests of the supervisor: events in, actions and states out.

use supervisor::{
    Action, Backoff, Command, Event, Exit, ExitReason, Millis, Outcome, Policy, Signal, Supervisor,
    TimerKind, VassalState,
};

fn policy() -> Policy {
    Policy {
        backoff: Backoff {
            min: 500,
            max: 8_000,
            jitter_percent: 0,
        },
        start_timeout: 10_000,
        reload_mercy: 5_000,
        stable_after: 10_000,
        // Off here; `hung_generation_without_heartbeats_is_killed_and_restarted` turns it on.
        watchdog: 0,
    }
}

struct H {
    s: Supervisor,
    now: u64,
}

impl H {
    fn new() -> H {
        H {
            s: Supervisor::new(policy(), 1),
            now: 0,
        }
    }
    fn at(&mut self, t: u64) -> &mut Self {
        self.now = t;
        self
    }
    fn ev(&mut self, e: Event) -> Vec<Action> {
        let out = self.s.on_event(e, Millis(self.now));
        assert_eq!(
            self.s.illegal_transitions, 0,
            "transition outside the table"
        );
        out
    }
    fn changed(&mut self, app: &str) -> Vec<Action> {
        self.ev(Event::ConfigChanged {
            app: app.into(),
            valid: Ok(()),
        })
    }
    fn invalid(&mut self, app: &str, why: &str) -> Vec<Action> {
        self.ev(Event::ConfigChanged {
            app: app.into(),
            valid: Err(why.into()),
        })
    }
    fn ready(&mut self, app: &str, gen: u64) -> Vec<Action> {
        self.ev(Event::Ready {
            app: app.into(),
            gen,
        })
    }
    /// An exit with code 1 whose last output was `output`.
    fn exited(&mut self, app: &str, gen: u64, output: &str) -> Vec<Action> {
        self.exited_with(
            app,
            gen,
            Exit {
                reason: ExitReason::Code(1),
                output: output.into(),
            },
        )
    }
    fn exited_with(&mut self, app: &str, gen: u64, exit: Exit) -> Vec<Action> {
        self.ev(Event::Exited {
            app: app.into(),
            gen,
            exit,
        })
    }
    fn ctl(&mut self, reply: u64, cmd: Command) -> Vec<Action> {
        self.ev(Event::Control {
            reply: Some(reply),
            cmd,
        })
    }
    fn timer(&mut self, app: &str, gen: u64, kind: TimerKind) -> Vec<Action> {
        self.ev(Event::Timer {
            app: app.into(),
            gen,
            kind,
        })
    }
    fn state(&self, app: &str) -> Option<VassalState> {
        self.s.state(app).cloned()
    }
    /// An app that is Ready with generation 1.
    fn running(app: &str) -> H {
        let mut h = H::new();
        h.changed(app);
        h.ready(app, 1);
        h
    }
}

fn spawn(app: &str, gen: u64) -> Action {
    Action::Spawn {
        app: app.into(),
        gen,
    }
}
fn sig(app: &str, gen: u64, signal: Signal) -> Action {
    Action::Signal {
        app: app.into(),
        gen,
        signal,
    }
}
fn timer(app: &str, gen: u64, kind: TimerKind, at: u64) -> Action {
    Action::Timer {
        app: app.into(),
        gen,
        kind,
        at: Millis(at),
    }
}
fn replies(actions: &[Action]) -> Vec<(u64, Outcome)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reply { reply, outcome } => Some((*reply, outcome.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn new_ini_spawns_a_generation_with_a_start_timeout() {
    let mut h = H::new();
    let out = h.changed("a");
    assert_eq!(
        out,
        [
            spawn("a", 1),
            timer("a", 1, TimerKind::StartTimeout, 10_000)
        ]
    );
    assert_eq!(h.state("a"), Some(VassalState::Starting { gen: 1 }));
    assert!(h.ready("a", 1).is_empty());
    assert_eq!(h.state("a"), Some(VassalState::Ready { gen: 1 }));
}

#[test]
fn reload_is_blue_green() {
    let mut h = H::running("a");
    let out = h.at(100).ctl(7, Command::Reload("a".into()));
    assert_eq!(
        out,
        [
            spawn("a", 2),
            timer("a", 2, TimerKind::StartTimeout, 10_100)
        ]
    );
    assert_eq!(
        h.state("a"),
        Some(VassalState::Reloading { old: 1, new: 2 })
    );
    // Nothing is signalled until the new generation is ready.
    let out = h.at(300).ready("a", 2);
    assert_eq!(out[0], sig("a", 1, Signal::Term));
    assert_eq!(out[1], timer("a", 1, TimerKind::KillDeadline, 5_300));
    // The reply waits until the old generation stops accepting, so the next request
    // after `emperorctl reload` returns meets the new code.
    assert!(replies(&out).is_empty());
    assert_eq!(h.state("a"), Some(VassalState::Ready { gen: 2 }));
    let out = h.ev(Event::Stopping {
        app: "a".into(),
        gen: 1,
    });
    assert!(matches!(&replies(&out)[..], [(7, Outcome::Done(_))]));
    // The old generation's exit is expected and changes nothing.
    assert!(h.exited("a", 1, "exit 0").is_empty());
    assert_eq!(h.state("a"), Some(VassalState::Ready { gen: 2 }));
    // Its kill deadline, arriving later, is stale.
    assert!(h.timer("a", 1, TimerKind::KillDeadline).is_empty());
}

#[test]
fn reload_keeps_old_generation_on_import_error() {
    let mut h = H::running("a");
    h.ctl(7, Command::Reload("a".into()));
    let out = h.exited(
        "a",
        2,
        "exit 22: ModuleNotFoundError: No module named 'wsgi'",
    );
    assert!(!out
        .iter()
        .any(|a| matches!(a, Action::Signal { .. } | Action::Spawn { .. })));
    let r = replies(&out);
    assert!(
        matches!(&r[..], [(7, Outcome::Failed(m))] if m.contains("ModuleNotFoundError") && m.contains("keeps serving")),
        "{r:?}"
    );
    assert_eq!(h.state("a"), Some(VassalState::Ready { gen: 1 }));
    let st = &h.s.status(Millis(0))[0];
    assert!(st.error.as_deref().unwrap().contains("ModuleNotFoundError"));
}

#[test]
fn reload_that_never_gets_ready_is_killed_and_old_keeps_serving() {
    let mut h = H::running("a");
    h.ctl(7, Command::Reload("a".into()));
    let out = h.at(10_000).timer("a", 2, TimerKind::StartTimeout);
    assert_eq!(out[0], sig("a", 2, Signal::Kill));
    assert!(matches!(&replies(&out)[..], [(7, Outcome::Failed(m))] if m.contains("READY=1")));
    assert_eq!(h.state("a"), Some(VassalState::Ready { gen: 1 }));
    assert!(h.exited("a", 2, "killed").is_empty());
}

#[test]
fn reload_during_reload_replaces_the_pending_generation() {
    let mut h = H::running("a");
    h.ctl(1, Command::Reload("a".into()));
    let out = h.ctl(2, Command::Reload("a".into()));
    assert_eq!(out[0], sig("a", 2, Signal::Term));
    assert!(out.contains(&spawn("a", 3)));
    assert_eq!(
        h.state("a"),
        Some(VassalState::Reloading { old: 1, new: 3 })
    );
    assert!(h.exited("a", 2, "terminated").is_empty());
    assert!(replies(&h.ready("a", 3)).is_empty());
    // The old generation exiting (without STOPPING=1) also completes the reload.
    let r = replies(&h.exited("a", 1, "exit 0"));
    assert_eq!(r.len(), 2, "both waiters answered: {r:?}");
}

#[test]
fn old_generation_dying_during_reload_leaves_the_new_one_starting() {
    let mut h = H::running("a");
    h.ctl(1, Command::Reload("a".into()));
    assert!(h.exited("a", 1, "killed by signal 9").is_empty());
    assert_eq!(h.state("a"), Some(VassalState::Starting { gen: 2 }));
    h.ready("a", 2);
    assert_eq!(h.state("a"), Some(VassalState::Ready { gen: 2 }));
}

#[test]
fn crash_loop_backoff_grows_and_caps() {
    let mut h = H::new();
    h.changed("a");
    let mut gen = 1;
    let mut delays = Vec::new();
    let mut t = 0;
    for _ in 0..8 {
        t += 10;
        let out = h.at(t).exited("a", gen, "exit 1");
        match &out[..] {
            [Action::Spawn { gen: g, .. }, ..] => {
                delays.push(0);
                gen = *g;
            }
            [Action::Timer {
                kind: TimerKind::BackoffOver,
                gen: round,
                at,
                ..
            }] => {
                delays.push(at.0 - t);
                let round = *round;
                t = at.0;
                let out = h.at(t).timer("a", round, TimerKind::BackoffOver);
                let Action::Spawn { gen: g, .. } = out[0] else {
                    panic!("{out:?}")
                };
                gen = g;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(delays, [0, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
    assert_eq!(h.s.status(Millis(t))[0].restarts, 8);
}

#[test]
fn backoff_resets_after_a_stable_run() {
    let mut h = H::new();
    h.changed("a");
    h.at(10).exited("a", 1, "exit 1"); // attempt 0: immediate gen 2
    let out = h.at(20).exited("a", 2, "exit 1");
    assert!(matches!(out[..], [Action::Timer { .. }]), "{out:?}");
    h.at(520).timer("a", 2, TimerKind::BackoffOver); // gen 3
    h.at(600).ready("a", 3);
    // Ready for longer than stable_after: the next crash respawns at once.
    let out = h.at(20_000).exited("a", 3, "killed by signal 9");
    assert_eq!(out[0], spawn("a", 4));
}

#[test]
fn restart_leaves_backoff_at_once() {
    let mut h = H::new();
    h.changed("a");
    h.exited("a", 1, "exit 1");
    h.exited("a", 2, "exit 1");
    assert!(matches!(h.state("a"), Some(VassalState::Backoff { .. })));
    let out = h.ctl(9, Command::Restart("a".into()));
    assert_eq!(out[0], spawn("a", 3));
    let r = replies(&h.ready("a", 3));
    assert!(matches!(&r[..], [(9, Outcome::Done(_))]));
    // The stale backoff timer does nothing.
    assert!(h.timer("a", 2, TimerKind::BackoffOver).is_empty());
}

#[test]
fn stop_holds_until_start_or_ini_change() {
    let mut h = H::running("a");
    let out = h.ctl(3, Command::Stop("a".into()));
    assert_eq!(out[0], sig("a", 1, Signal::Term));
    assert_eq!(h.state("a"), Some(VassalState::Draining));
    let r = replies(&h.exited("a", 1, "exit 0"));
    assert!(matches!(&r[..], [(3, Outcome::Done(_))]));
    assert_eq!(h.state("a"), Some(VassalState::Stopped));
    // reload does not start a stopped app
    let r = replies(&h.ctl(4, Command::Reload("a".into())));
    assert!(matches!(&r[..], [(4, Outcome::Failed(m))] if m.contains("start")));
    // start does
    let out = h.ctl(5, Command::Start("a".into()));
    assert_eq!(out[0], spawn("a", 2));
    h.ready("a", 2);
    // stopping again, then an ini change starts it
    h.ctl(6, Command::Stop("a".into()));
    h.exited("a", 2, "exit 0");
    let out = h.changed("a");
    assert_eq!(out[0], spawn("a", 3));
}

#[test]
fn ini_change_while_draining_from_stop_restarts_after_drain() {
    let mut h = H::running("a");
    h.ctl(3, Command::Stop("a".into()));
    assert!(h.changed("a").is_empty());
    let out = h.exited("a", 1, "exit 0");
    assert!(out.contains(&spawn("a", 2)), "{out:?}");
}

#[test]
fn removed_ini_stops_and_releases_the_socket() {
    let mut h = H::running("a");
    let out = h.ev(Event::ConfigRemoved { app: "a".into() });
    assert_eq!(out[0], sig("a", 1, Signal::Term));
    let out = h.exited("a", 1, "exit 0");
    assert_eq!(out, [Action::Release { app: "a".into() }]);
    assert_eq!(h.state("a"), None);
    let r = replies(&h.ctl(1, Command::Reload("a".into())));
    assert!(matches!(&r[..], [(1, Outcome::UnknownApp(_))]));
    // The ini comes back: a fresh start.
    assert_eq!(h.changed("a")[0], spawn("a", 2));
}

#[test]
fn ini_put_back_while_draining_after_removal_starts_again() {
    let mut h = H::running("a");
    h.ev(Event::ConfigRemoved { app: "a".into() });
    h.changed("a");
    let out = h.exited("a", 1, "exit 0");
    assert!(out.contains(&spawn("a", 2)), "{out:?}");
    assert!(!out.iter().any(|a| matches!(a, Action::Release { .. })));
}

#[test]
fn invalid_ini_keeps_the_running_generation() {
    let mut h = H::running("a");
    assert!(h.invalid("a", "a.ini:3: error: unknown option").is_empty());
    assert_eq!(h.state("a"), Some(VassalState::Ready { gen: 1 }));
    let st = &h.s.status(Millis(0))[0];
    assert_eq!(st.error.as_deref(), Some("a.ini:3: error: unknown option"));
    let r = replies(&h.ctl(2, Command::Reload("a".into())));
    assert!(matches!(&r[..], [(2, Outcome::Failed(m))] if m.contains("a.ini:3")));
    // A crash now cannot respawn: nothing valid to start.
    h.exited("a", 1, "killed");
    assert!(matches!(h.state("a"), Some(VassalState::Failed { .. })));
    // Fixing the ini starts it.
    let out = h.changed("a");
    assert!(out.contains(&spawn("a", 2)));
}

#[test]
fn new_invalid_ini_is_not_spawned() {
    let mut h = H::new();
    assert!(h.invalid("b", "b.ini:1: bad").is_empty());
    assert_eq!(h.s.status(Millis(0))[0].state, "invalid");
}

#[test]
fn shutdown_drains_everything_then_exits() {
    let mut h = H::running("a");
    h.changed("b");
    let out = h.ev(Event::Shutdown { force: false });
    assert!(out.contains(&sig("a", 1, Signal::Term)));
    assert!(out.contains(&sig("b", 2, Signal::Term)));
    assert!(!out.contains(&Action::Exit));
    // A second signal forces.
    let out = h.ev(Event::Shutdown { force: true });
    assert!(out.contains(&sig("a", 1, Signal::Kill)));
    assert!(h.exited("a", 1, "killed").is_empty());
    assert_eq!(h.exited("b", 2, "killed"), [Action::Exit]);
    // Nothing new starts during shutdown.
    assert!(h.changed("c").is_empty());
}

#[test]
fn shutdown_with_nothing_running_exits_at_once() {
    let mut h = H::new();
    assert_eq!(h.ev(Event::Shutdown { force: false }), [Action::Exit]);
}

#[test]
fn reload_all_answers_once_when_every_app_is_done() {
    let mut h = H::running("a");
    h.changed("b");
    h.ready("b", 2);
    let out = h.ctl(
        42,
        Command::ReloadAll {
            just_started: vec![],
        },
    );
    assert!(replies(&out).is_empty());
    assert!(replies(&h.ready("a", 3)).is_empty());
    assert!(replies(&h.exited("b", 4, "exit 22: ImportError")).is_empty());
    let r = replies(&h.ev(Event::Stopping {
        app: "a".into(),
        gen: 1,
    }));
    assert!(
        matches!(&r[..], [(42, Outcome::Failed(m))] if m.starts_with("b: ")),
        "{r:?}"
    );
}

#[test]
fn duplicate_and_unknown_events_are_ignored() {
    let mut h = H::running("a");
    assert!(h.ready("a", 1).is_empty());
    assert!(h.ready("zzz", 1).is_empty());
    assert!(h.exited("zzz", 1, "x").is_empty());
    assert!(h.exited("a", 99, "x").is_empty());
    assert!(h.ev(Event::ConfigRemoved { app: "zzz".into() }).is_empty());
    assert!(h.timer("a", 99, TimerKind::StartTimeout).is_empty());
    let r = replies(&h.ctl(1, Command::Stop("zzz".into())));
    assert!(matches!(&r[..], [(1, Outcome::UnknownApp(_))]));
    h.exited("a", 1, "boom");
    assert!(h.exited("a", 1, "boom").is_empty());
}

#[test]
fn start_timeout_of_a_first_start_counts_as_a_failure() {
    let mut h = H::new();
    h.changed("a");
    let out = h.at(10_000).timer("a", 1, TimerKind::StartTimeout);
    assert_eq!(out[0], sig("a", 1, Signal::Kill));
    // attempt 0: respawned at once
    assert!(out.contains(&spawn("a", 2)));
    assert!(h.exited("a", 1, "killed").is_empty());
}

#[test]
fn pid_lookup_maps_notifications_to_generations() {
    let mut h = H::new();
    h.changed("a");
    h.ev(Event::Spawned {
        app: "a".into(),
        gen: 1,
        pid: 4242,
    });
    assert_eq!(h.s.find_pid(4242), Some(("a", 1)));
    assert_eq!(h.s.status(Millis(0))[0].pid, Some(4242));
}

/// Random event sequences never leave the transition table and never panic.
#[test]
fn random_walks_stay_inside_the_table() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for _ in 0..300 {
        let mut h = H::new();
        for step in 0..200u64 {
            let app = ["a", "b"][rnd(2) as usize];
            let gen = rnd(12);
            h.now += rnd(3000);
            let e = match rnd(12) {
                0 => Event::ConfigChanged {
                    app: app.into(),
                    valid: Ok(()),
                },
                1 => Event::ConfigChanged {
                    app: app.into(),
                    valid: Err("bad".into()),
                },
                2 => Event::ConfigRemoved { app: app.into() },
                3 => Event::Ready {
                    app: app.into(),
                    gen,
                },
                4 | 5 => Event::Exited {
                    app: app.into(),
                    gen,
                    exit: Exit::new(ExitReason::Code(1)),
                },
                6 => Event::Timer {
                    app: app.into(),
                    gen,
                    kind: [
                        TimerKind::StartTimeout,
                        TimerKind::KillDeadline,
                        TimerKind::BackoffOver,
                    ][rnd(3) as usize],
                },
                7 => Event::Control {
                    reply: Some(step),
                    cmd: match rnd(5) {
                        0 => Command::Reload(app.into()),
                        1 => Command::Restart(app.into()),
                        2 => Command::Stop(app.into()),
                        3 => Command::Start(app.into()),
                        _ => Command::ReloadAll {
                            just_started: vec![app.into()],
                        },
                    },
                },
                8 => Event::Spawned {
                    app: app.into(),
                    gen,
                    pid: gen as u32 + 100,
                },
                9 if rnd(20) == 0 => Event::Shutdown { force: rnd(2) == 0 },
                10 => Event::ConfigUnreadable {
                    app: app.into(),
                    why: "cannot open: Too many open files".into(),
                },
                _ => Event::Status {
                    app: app.into(),
                    gen,
                    text: "ok".into(),
                },
            };
            h.ev(e);
        }
    }
}

#[test]
fn start_of_a_starting_app_answers_when_it_is_ready() {
    let mut h = H::new();
    h.changed("a");
    assert!(replies(&h.ctl(1, Command::Start("a".into()))).is_empty());
    let r = replies(&h.ready("a", 1));
    assert!(matches!(&r[..], [(1, Outcome::Done(_))]));
    let r = replies(&h.ctl(2, Command::Start("a".into())));
    assert!(matches!(&r[..], [(2, Outcome::Done(m))] if m == "already running"));
}

#[test]
fn reload_reply_comes_at_the_kill_deadline_when_the_old_one_never_says_stopping() {
    let mut h = H::running("a");
    h.ctl(7, Command::Reload("a".into()));
    h.ready("a", 2);
    let out = h.at(5_000).timer("a", 1, TimerKind::KillDeadline);
    assert!(out.contains(&sig("a", 1, Signal::Kill)));
    assert!(matches!(&replies(&out)[..], [(7, Outcome::Done(_))]));
}

#[test]
fn hung_generation_without_heartbeats_is_killed_and_restarted() {
    let mut h = H {
        s: Supervisor::new(
            Policy {
                watchdog: 30_000,
                ..policy()
            },
            1,
        ),
        now: 0,
    };
    h.changed("a");
    let out = h.at(100).ready("a", 1);
    assert_eq!(out, [timer("a", 1, TimerKind::Watchdog, 30_100)]);
    // Heartbeats keep it alive: the check re-arms from the last beat.
    h.at(20_000).ev(Event::Heartbeat {
        app: "a".into(),
        gen: 1,
    });
    let out = h.at(30_100).timer("a", 1, TimerKind::Watchdog);
    assert_eq!(out, [timer("a", 1, TimerKind::Watchdog, 50_000)]);
    // Silence: killed, and its exit is a crash like any other.
    let out = h.at(50_000).timer("a", 1, TimerKind::Watchdog);
    assert_eq!(out, [sig("a", 1, Signal::Kill)]);
    assert!(h.s.status(Millis(50_000))[0]
        .error
        .as_deref()
        .unwrap()
        .contains("WATCHDOG"));
    let out = h.exited("a", 1, "killed by signal SIGKILL");
    assert_eq!(out[0], spawn("a", 2));
}

/// Issue 9 #11: SIGHUP rescans, and the rescan already started a new generation of a
/// changed app; the reload-all that follows must wait for it, not replace it.
#[test]
fn reload_all_after_a_rescan_gives_a_changed_app_exactly_one_generation() {
    let mut h = H::running("a");
    h.changed("b");
    h.ready("b", 2);
    // The rescan saw a's ini change: generation 3 starts beside 1.
    let out = h.changed("a");
    assert_eq!(
        out.iter()
            .filter(|x| matches!(x, Action::Spawn { .. }))
            .count(),
        1
    );
    let out = h.ctl(
        9,
        Command::ReloadAll {
            just_started: vec!["a".into()],
        },
    );
    let spawns: Vec<&Action> = out
        .iter()
        .filter(|x| matches!(x, Action::Spawn { .. }))
        .collect();
    assert_eq!(spawns, [&spawn("b", 4)], "only b gets a new generation");
    assert_eq!(
        h.state("a"),
        Some(VassalState::Reloading { old: 1, new: 3 }),
        "a's pending generation is not replaced"
    );
    h.ready("a", 3);
    h.ready("b", 4);
    h.ev(Event::Stopping {
        app: "a".into(),
        gen: 1,
    });
    let r = replies(&h.ev(Event::Stopping {
        app: "b".into(),
        gen: 2,
    }));
    assert!(matches!(&r[..], [(9, Outcome::Done(_))]), "{r:?}");
}

/// Issue 9 #5: the reason is the kernel's, the output only follows it.
#[test]
fn status_shows_the_signal_that_killed_a_generation_not_its_last_output() {
    let mut h = H::running("a");
    h.exited_with(
        "a",
        1,
        Exit {
            reason: ExitReason::Signal {
                number: 9,
                name: "SIGKILL".into(),
                core_dumped: false,
            },
            output: "WARN the app runs as root".into(),
        },
    );
    let st = &h.s.status(Millis(0))[0];
    let exit = st.last_exit.as_ref().expect("an exit was recorded");
    assert_eq!(exit.reason.to_string(), "killed by signal SIGKILL");
    assert_eq!(exit.output, "WARN the app runs as root");
}

/// Issue 9 #4: an ini that cannot be opened (no fd left) is not an invalid ini.
#[test]
fn an_unreadable_ini_is_failed_not_invalid_and_a_later_read_starts_it() {
    let mut h = H::new();
    let out = h.ev(Event::ConfigUnreadable {
        app: "a".into(),
        why: "cannot open: Too many open files".into(),
    });
    assert!(out.is_empty(), "{out:?}");
    let st = &h.s.status(Millis(0))[0];
    assert_eq!(st.state, "failed");
    assert_eq!(
        st.error.as_deref(),
        Some("cannot open: Too many open files")
    );
    let r = replies(&h.ctl(3, Command::Start("a".into())));
    assert!(
        matches!(&r[..], [(3, Outcome::Failed(m))] if m.contains("cannot be read")),
        "{r:?}"
    );
    let out = h.changed("a");
    assert_eq!(out[0], spawn("a", 1));
    assert_eq!(h.s.status(Millis(0))[0].error, None);

    // A running app keeps serving through an unreadable moment.
    let mut h = H::running("b");
    h.ev(Event::ConfigUnreadable {
        app: "b".into(),
        why: "cannot open: Too many open files".into(),
    });
    assert_eq!(h.state("b"), Some(VassalState::Ready { gen: 1 }));
}
