//! The supervisor: every app's state plus the processes it has, and `on_event`.

use std::collections::{BTreeMap, HashMap};

use crate::backoff::Rng;
use crate::state::{allowed, VassalState};
use crate::{
    Action, Command, Event, Exit, ExitReason, Gen, Millis, Outcome, Policy, ReplyId, Signal,
    TimerKind,
};

#[derive(Debug, Clone)]
struct Proc {
    pid: Option<u32>,
    /// The last WATCHDOG=1 (or READY=1).
    last_beat: Millis,
    ready_at: Option<Millis>,
    /// Told to stop (drain) at this time.
    stopping: Option<Millis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitFor {
    /// The pending generation becomes ready (reload, start, restart).
    Ready,
    /// A reload's new generation is ready; the old one `gen` must stop accepting
    /// (STOPPING=1 or exit) before the reply, so the next request meets new code.
    OldStopped(Gen),
    /// Every process of the app has exited (stop).
    Stopped,
}

#[derive(Debug)]
struct App {
    state: VassalState,
    /// The last ini we were told about was valid (the shell keeps the last valid one
    /// to spawn from).
    config_ok: bool,
    config_error: Option<String>,
    /// The ini could not be read the last time (not a config error: retried).
    unreadable: Option<String>,
    removed: bool,
    /// `emperorctl stop`: stay stopped until `start` or an ini change.
    held: bool,
    procs: BTreeMap<Gen, Proc>,
    attempt: u32,
    backoff_round: u64,
    restarts: u32,
    last_exit: Option<Exit>,
    error: Option<String>,
    status_text: Option<String>,
    waiters: Vec<(ReplyId, WaitFor)>,
}

impl App {
    fn new() -> App {
        App {
            state: VassalState::Stopped,
            config_ok: false,
            config_error: None,
            unreadable: None,
            removed: false,
            held: false,
            procs: BTreeMap::new(),
            attempt: 0,
            backoff_round: 0,
            restarts: 0,
            last_exit: None,
            error: None,
            status_text: None,
            waiters: Vec::new(),
        }
    }
}

/// What `emperorctl status` shows of one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppView {
    pub name: String,
    pub state: &'static str,
    /// The serving generation, else the pending one.
    pub gen: Option<Gen>,
    pub pid: Option<u32>,
    pub uptime_ms: Option<u64>,
    pub restarts: u32,
    pub last_exit: Option<Exit>,
    pub error: Option<String>,
    pub next_attempt_ms: Option<u64>,
    pub status_text: Option<String>,
}

/// A `reload --all` reply waits for every app it touched.
#[derive(Debug)]
struct Group {
    pending: usize,
    failures: Vec<String>,
}

pub struct Supervisor {
    apps: BTreeMap<String, App>,
    policy: Policy,
    next_gen: Gen,
    next_group: ReplyId,
    groups: HashMap<ReplyId, (ReplyId, Group)>,
    rng: Rng,
    shutting_down: bool,
    /// Transitions outside the table (a bug); tests assert this stays 0.
    pub illegal_transitions: u32,
}

/// Group ids live far above the shell's reply ids.
const GROUP_BASE: ReplyId = 1 << 62;

impl Supervisor {
    pub fn new(policy: Policy, seed: u64) -> Supervisor {
        Supervisor {
            apps: BTreeMap::new(),
            policy,
            next_gen: 1,
            next_group: GROUP_BASE,
            groups: HashMap::new(),
            rng: Rng::new(seed),
            shutting_down: false,
            illegal_transitions: 0,
        }
    }

    pub fn state(&self, app: &str) -> Option<&VassalState> {
        self.apps.get(app).map(|a| &a.state)
    }

    pub fn app_names(&self) -> impl Iterator<Item = &str> {
        self.apps.keys().map(String::as_str)
    }

    /// The app and generation a vassal process belongs to.
    pub fn find_pid(&self, pid: u32) -> Option<(&str, Gen)> {
        self.apps.iter().find_map(|(name, a)| {
            a.procs
                .iter()
                .find(|(_, p)| p.pid == Some(pid))
                .map(|(g, _)| (name.as_str(), *g))
        })
    }

    /// Number of live processes of `app` (including draining ones).
    pub fn process_count(&self, app: &str) -> usize {
        self.apps.get(app).map_or(0, |a| a.procs.len())
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    pub fn status(&self, now: Millis) -> Vec<AppView> {
        self.apps
            .iter()
            .map(|(name, a)| {
                let gen = a.state.serving().or(a.state.pending());
                let proc = gen.and_then(|g| a.procs.get(&g));
                let state = match (&a.state, a.config_ok) {
                    // Not an invalid ini: one that could not be read (e.g. no fd left).
                    (VassalState::Failed { .. }, _) if a.unreadable.is_some() => "failed",
                    (VassalState::Failed { .. }, false) => "invalid",
                    (s, _) => s.kind().as_str(),
                };
                AppView {
                    name: name.clone(),
                    state,
                    gen,
                    pid: proc.and_then(|p| p.pid),
                    uptime_ms: a
                        .state
                        .serving()
                        .and_then(|g| a.procs.get(&g))
                        .and_then(|p| p.ready_at)
                        .map(|r| now.since(r)),
                    restarts: a.restarts,
                    last_exit: a.last_exit.clone(),
                    error: a
                        .unreadable
                        .clone()
                        .or_else(|| a.config_error.clone())
                        .or_else(|| a.error.clone()),
                    next_attempt_ms: match a.state {
                        VassalState::Backoff { until, .. } => Some(until.since(now)),
                        _ => None,
                    },
                    status_text: a.status_text.clone(),
                }
            })
            .collect()
    }

    pub fn on_event(&mut self, ev: Event, now: Millis) -> Vec<Action> {
        let mut out = Vec::new();
        match ev {
            Event::ConfigChanged { app, valid } => self.config_changed(&app, valid, now, &mut out),
            Event::ConfigRemoved { app } => self.config_removed(&app, now, &mut out),
            Event::ConfigUnreadable { app, why } => self.config_unreadable(&app, why),
            Event::Spawned { app, gen, pid } => {
                if let Some(p) = self.apps.get_mut(&app).and_then(|a| a.procs.get_mut(&gen)) {
                    p.pid = Some(pid);
                }
            }
            Event::SpawnFailed { app, gen, why } => self.exited(
                &app,
                gen,
                Exit::new(ExitReason::NotStarted(why)),
                now,
                &mut out,
            ),
            Event::Ready { app, gen } => self.ready(&app, gen, now, &mut out),
            Event::Status { app, gen, text } => {
                if let Some(a) = self.apps.get_mut(&app) {
                    if a.state.serving() == Some(gen) || a.state.pending() == Some(gen) {
                        a.status_text = Some(text);
                    }
                }
            }
            Event::Stopping { app, gen } => self.old_stopped(&app, gen, &mut out),
            Event::Heartbeat { app, gen } => {
                if let Some(p) = self.apps.get_mut(&app).and_then(|a| a.procs.get_mut(&gen)) {
                    p.last_beat = now;
                }
            }
            Event::Exited { app, gen, exit } => {
                self.old_stopped(&app, gen, &mut out);
                self.exited(&app, gen, exit, now, &mut out)
            }
            Event::Timer { app, gen, kind } => self.timer(&app, gen, kind, now, &mut out),
            Event::Control { reply, cmd } => self.control(reply, cmd, now, &mut out),
            Event::Shutdown { force } => self.shutdown(force, now, &mut out),
        }
        out
    }

    fn set_state(&mut self, app: &str, to: VassalState) {
        let Some(a) = self.apps.get_mut(app) else {
            return;
        };
        if !allowed(a.state.kind(), to.kind()) {
            self.illegal_transitions += 1;
            debug_assert!(false, "illegal transition {:?} -> {:?}", a.state, to);
        }
        a.state = to;
    }

    fn spawn(&mut self, app: &str, now: Millis, out: &mut Vec<Action>) -> Gen {
        let gen = self.next_gen;
        self.next_gen += 1;
        if let Some(a) = self.apps.get_mut(app) {
            a.procs.insert(
                gen,
                Proc {
                    pid: None,
                    last_beat: now,
                    ready_at: None,
                    stopping: None,
                },
            );
        }
        out.push(Action::Spawn {
            app: app.to_owned(),
            gen,
        });
        out.push(Action::Timer {
            app: app.to_owned(),
            gen,
            kind: TimerKind::StartTimeout,
            at: now.plus(self.policy.start_timeout),
        });
        gen
    }

    /// Graceful stop of one generation, with SIGKILL after the mercy period.
    fn stop_proc(
        &mut self,
        app: &str,
        gen: Gen,
        signal: Signal,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let Some(p) = self.apps.get_mut(app).and_then(|a| a.procs.get_mut(&gen)) else {
            return;
        };
        let first = p.stopping.is_none();
        p.stopping.get_or_insert(now);
        out.push(Action::Signal {
            app: app.to_owned(),
            gen,
            signal,
        });
        if first && signal == Signal::Term {
            out.push(Action::Timer {
                app: app.to_owned(),
                gen,
                kind: TimerKind::KillDeadline,
                at: now.plus(self.policy.reload_mercy),
            });
        }
    }

    fn stop_all(&mut self, app: &str, signal: Signal, now: Millis, out: &mut Vec<Action>) {
        let gens: Vec<Gen> = self
            .apps
            .get(app)
            .map(|a| a.procs.keys().copied().collect())
            .unwrap_or_default();
        for g in gens {
            self.stop_proc(app, g, signal, now, out);
        }
    }

    fn resolve(&mut self, app: &str, kind: WaitFor, outcome: Outcome, out: &mut Vec<Action>) {
        let Some(a) = self.apps.get_mut(app) else {
            return;
        };
        let (hit, keep): (Vec<_>, Vec<_>) = a.waiters.drain(..).partition(|(_, k)| *k == kind);
        a.waiters = keep;
        for (reply, _) in hit {
            self.reply(reply, app, outcome.clone(), out);
        }
    }

    fn fail_all_waiters(&mut self, app: &str, why: &str, out: &mut Vec<Action>) {
        let Some(a) = self.apps.get_mut(app) else {
            return;
        };
        let waiters: Vec<_> = a.waiters.drain(..).collect();
        for (reply, _) in waiters {
            self.reply(reply, app, Outcome::Failed(why.to_owned()), out);
        }
    }

    fn reply(&mut self, reply: ReplyId, app: &str, outcome: Outcome, out: &mut Vec<Action>) {
        let Some((_, g)) = self.groups.get_mut(&reply) else {
            out.push(Action::Reply { reply, outcome });
            return;
        };
        g.pending -= 1;
        if let Outcome::Failed(why) | Outcome::UnknownApp(why) = &outcome {
            g.failures.push(format!("{app}: {why}"));
        }
        if g.pending > 0 {
            return;
        }
        let (outer, g) = self
            .groups
            .remove(&reply)
            .expect("group present: just looked up");
        out.push(Action::Reply {
            reply: outer,
            outcome: if g.failures.is_empty() {
                Outcome::Done("every app reloaded".into())
            } else {
                Outcome::Failed(g.failures.join("\n"))
            },
        });
    }

    fn answer(
        &mut self,
        reply: Option<ReplyId>,
        app: &str,
        outcome: Outcome,
        out: &mut Vec<Action>,
    ) {
        if let Some(r) = reply {
            self.reply(r, app, outcome, out);
        }
    }

    fn wait(&mut self, app: &str, reply: Option<ReplyId>, kind: WaitFor) {
        if let (Some(r), Some(a)) = (reply, self.apps.get_mut(app)) {
            a.waiters.push((r, kind));
        }
    }

    /// Start a generation from whatever state the app is in (used by reload, restart,
    /// start and ini changes). A pending generation is replaced; a serving one keeps
    /// serving until the new one is ready.
    fn begin(&mut self, app: &str, now: Millis, out: &mut Vec<Action>) {
        let state = self.apps[app].state.clone();
        match state {
            VassalState::Ready { gen } => {
                let new = self.spawn(app, now, out);
                self.set_state(app, VassalState::Reloading { old: gen, new });
            }
            VassalState::Reloading { old, new } => {
                self.stop_proc(app, new, Signal::Term, now, out);
                let newer = self.spawn(app, now, out);
                self.set_state(app, VassalState::Reloading { old, new: newer });
            }
            VassalState::Starting { gen } => {
                self.stop_proc(app, gen, Signal::Term, now, out);
                let newer = self.spawn(app, now, out);
                self.set_state(app, VassalState::Starting { gen: newer });
            }
            VassalState::Backoff { .. } | VassalState::Stopped | VassalState::Failed { .. } => {
                let gen = self.spawn(app, now, out);
                self.set_state(app, VassalState::Starting { gen });
            }
            // Draining: the exits finish the stop, then `after_drain` starts it.
            VassalState::Draining => {}
        }
    }

    fn config_changed(
        &mut self,
        app: &str,
        valid: Result<(), String>,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        if self.shutting_down {
            return;
        }
        let a = self.apps.entry(app.to_owned()).or_insert_with(App::new);
        a.unreadable = None;
        match valid {
            Ok(()) => {
                a.config_ok = true;
                a.config_error = None;
                a.held = false;
                // An ini put back while its app drains after removal: start it again
                // once drained.
                a.removed = false;
                self.begin(app, now, out);
            }
            Err(why) => {
                a.removed = false;
                a.config_ok = false;
                a.config_error = Some(why.clone());
                // A running generation keeps serving the last valid config.
                if matches!(
                    a.state,
                    VassalState::Backoff { .. } | VassalState::Failed { .. }
                ) || (a.state == VassalState::Stopped && !a.held)
                {
                    self.set_state(app, VassalState::Failed { why });
                }
            }
        }
    }

    /// The ini exists but could not be read: keep whatever runs; an app that has
    /// nothing running shows why (as `failed`, not `invalid`) until a read succeeds.
    fn config_unreadable(&mut self, app: &str, why: String) {
        if self.shutting_down {
            return;
        }
        let a = self.apps.entry(app.to_owned()).or_insert_with(App::new);
        a.unreadable = Some(why.clone());
        if a.procs.is_empty()
            && (matches!(
                a.state,
                VassalState::Backoff { .. } | VassalState::Failed { .. }
            ) || (a.state == VassalState::Stopped && !a.held))
        {
            self.set_state(app, VassalState::Failed { why });
        }
    }

    fn config_removed(&mut self, app: &str, now: Millis, out: &mut Vec<Action>) {
        let Some(a) = self.apps.get_mut(app) else {
            return;
        };
        a.removed = true;
        self.fail_all_waiters(app, "the app's ini was removed", out);
        self.drain(app, Signal::Term, now, out);
    }

    /// Stop every process of the app; finish at once if there are none.
    fn drain(&mut self, app: &str, signal: Signal, now: Millis, out: &mut Vec<Action>) {
        if self.apps[app].procs.is_empty() {
            self.after_drain(app, now, out);
            return;
        }
        self.stop_all(app, signal, now, out);
        if self.apps[app].state != VassalState::Draining {
            self.set_state(app, VassalState::Draining);
        }
    }

    /// Everything of the app has exited after a stop, removal or shutdown.
    fn after_drain(&mut self, app: &str, now: Millis, out: &mut Vec<Action>) {
        let a = &self.apps[app];
        if a.removed {
            self.fail_all_waiters(app, "the app's ini was removed", out);
            self.apps.remove(app);
            out.push(Action::Release {
                app: app.to_owned(),
            });
        } else if a.held || self.shutting_down {
            self.set_state(app, VassalState::Stopped);
            self.resolve(app, WaitFor::Stopped, Outcome::Done("stopped".into()), out);
        } else if let Some(why) = a.config_error.clone().filter(|_| !a.config_ok) {
            self.set_state(app, VassalState::Failed { why });
        } else {
            let gen = self.spawn(app, now, out);
            self.set_state(app, VassalState::Starting { gen });
        }
        if self.shutting_down && self.apps.values().all(|a| a.procs.is_empty()) {
            out.push(Action::Exit);
        }
    }

    fn ready(&mut self, app: &str, gen: Gen, now: Millis, out: &mut Vec<Action>) {
        let Some(a) = self.apps.get_mut(app) else {
            return;
        };
        let Some(p) = a.procs.get_mut(&gen) else {
            return;
        };
        if p.stopping.is_some() {
            return;
        }
        p.ready_at = Some(now);
        p.last_beat = now;
        if self.policy.watchdog > 0 {
            out.push(Action::Timer {
                app: app.to_owned(),
                gen,
                kind: TimerKind::Watchdog,
                at: now.plus(self.policy.watchdog),
            });
        }
        match a.state.clone() {
            VassalState::Starting { gen: g } if g == gen => {
                a.error = None;
                self.set_state(app, VassalState::Ready { gen });
                self.resolve(
                    app,
                    WaitFor::Ready,
                    Outcome::Done(format!("generation {gen} serving")),
                    out,
                );
            }
            VassalState::Reloading { old, new } if new == gen => {
                a.error = None;
                for w in a.waiters.iter_mut().filter(|(_, k)| *k == WaitFor::Ready) {
                    w.1 = WaitFor::OldStopped(old);
                }
                self.set_state(app, VassalState::Ready { gen });
                self.stop_proc(app, old, Signal::Term, now, out);
            }
            _ => {}
        }
    }

    /// The old generation of a reload stopped accepting: the reload is complete.
    fn old_stopped(&mut self, app: &str, gen: Gen, out: &mut Vec<Action>) {
        let Some(a) = self.apps.get(app) else {
            return;
        };
        let serving = a.state.serving().unwrap_or(gen);
        self.resolve(
            app,
            WaitFor::OldStopped(gen),
            Outcome::Done(format!(
                "generation {serving} serving; generation {gen} stopped accepting"
            )),
            out,
        );
    }

    fn exited(&mut self, app: &str, gen: Gen, exit: Exit, now: Millis, out: &mut Vec<Action>) {
        let Some(a) = self.apps.get_mut(app) else {
            return;
        };
        let Some(proc) = a.procs.remove(&gen) else {
            return;
        };
        if a.state == VassalState::Draining {
            if a.procs.is_empty() {
                self.after_drain(app, now, out);
            }
            return;
        }
        if proc.stopping.is_some() {
            // A replaced or drained generation finished; nothing else changes.
            return;
        }
        let how = exit.report();
        a.last_exit = Some(exit);
        match a.state.clone() {
            VassalState::Reloading { old, new } if new == gen => {
                // The new generation failed: the old one never stopped serving.
                a.error = Some(how.clone());
                self.set_state(app, VassalState::Ready { gen: old });
                self.resolve(
                    app,
                    WaitFor::Ready,
                    Outcome::Failed(format!(
                        "generation {gen} failed before it was ready; generation {old} keeps serving.\n{how}"
                    )),
                    out,
                );
            }
            VassalState::Reloading { old, new } if old == gen => {
                a.restarts += 1;
                self.set_state(app, VassalState::Starting { gen: new });
            }
            VassalState::Starting { gen: g } if g == gen => {
                a.restarts += 1;
                a.error = Some(how.clone());
                self.resolve(app, WaitFor::Ready, Outcome::Failed(how), out);
                self.backoff(app, false, now, out);
            }
            VassalState::Ready { gen: g } if g == gen => {
                a.restarts += 1;
                let stable = proc
                    .ready_at
                    .is_some_and(|r| now.since(r) >= self.policy.stable_after);
                self.backoff(app, stable, now, out);
            }
            _ => {}
        }
    }

    /// Nothing runs any more: respawn now or after the backoff delay.
    fn backoff(&mut self, app: &str, stable: bool, now: Millis, out: &mut Vec<Action>) {
        let random = self.rng.next();
        let a = self.apps.get_mut(app).expect("backoff for a known app");
        if stable {
            a.attempt = 0;
        }
        let delay = self.policy.backoff.delay(a.attempt, random);
        a.attempt = a.attempt.saturating_add(1);
        a.backoff_round += 1;
        let round = a.backoff_round;
        if !a.config_ok {
            let why = a.config_error.clone().unwrap_or_default();
            self.set_state(app, VassalState::Backoff { until: now, round });
            self.set_state(app, VassalState::Failed { why });
            return;
        }
        let until = now.plus(delay);
        self.set_state(app, VassalState::Backoff { until, round });
        if delay == 0 {
            let gen = self.spawn(app, now, out);
            self.set_state(app, VassalState::Starting { gen });
        } else {
            out.push(Action::Timer {
                app: app.to_owned(),
                gen: round,
                kind: TimerKind::BackoffOver,
                at: until,
            });
        }
    }

    fn timer(&mut self, app: &str, gen: Gen, kind: TimerKind, now: Millis, out: &mut Vec<Action>) {
        let Some(a) = self.apps.get(app) else {
            return;
        };
        match kind {
            TimerKind::BackoffOver => {
                if matches!(a.state, VassalState::Backoff { round, .. } if round == gen) {
                    let g = self.spawn(app, now, out);
                    self.set_state(app, VassalState::Starting { gen: g });
                }
            }
            TimerKind::Watchdog => {
                let Some(p) = a.procs.get(&gen).filter(|p| p.stopping.is_none()) else {
                    return;
                };
                let silent = now.since(p.last_beat);
                if silent < self.policy.watchdog {
                    out.push(Action::Timer {
                        app: app.to_owned(),
                        gen,
                        kind: TimerKind::Watchdog,
                        at: p.last_beat.plus(self.policy.watchdog),
                    });
                    return;
                }
                // Hung: no heartbeat. Killing it makes its exit a crash like any other
                // (respawn with backoff), and the reason is kept for `status`.
                let why = format!(
                    "generation {gen} sent no WATCHDOG=1 for {} s: killed",
                    silent / 1000
                );
                let a = self.apps.get_mut(app).expect("app present: checked above");
                a.error = Some(why);
                out.push(Action::Signal {
                    app: app.to_owned(),
                    gen,
                    signal: Signal::Kill,
                });
            }
            TimerKind::KillDeadline => {
                if a.procs.get(&gen).is_some_and(|p| p.stopping.is_some()) {
                    self.old_stopped(app, gen, out);
                    out.push(Action::Signal {
                        app: app.to_owned(),
                        gen,
                        signal: Signal::Kill,
                    });
                }
            }
            TimerKind::StartTimeout => {
                let waiting = a
                    .procs
                    .get(&gen)
                    .is_some_and(|p| p.ready_at.is_none() && p.stopping.is_none());
                if !waiting || a.state.pending() != Some(gen) {
                    return;
                }
                let why = format!(
                    "generation {gen} did not send READY=1 within {} s",
                    self.policy.start_timeout / 1000
                );
                // It is not serving anything: kill it, and decide now as if it had failed.
                self.stop_proc(app, gen, Signal::Kill, now, out);
                let a = self.apps.get_mut(app).expect("app present: checked above");
                a.error = Some(why.clone());
                match a.state.clone() {
                    VassalState::Reloading { old, .. } => {
                        self.set_state(app, VassalState::Ready { gen: old });
                        self.resolve(
                            app,
                            WaitFor::Ready,
                            Outcome::Failed(format!("{why}; generation {old} keeps serving")),
                            out,
                        );
                    }
                    _ => {
                        self.resolve(app, WaitFor::Ready, Outcome::Failed(why), out);
                        self.backoff(app, false, now, out);
                    }
                }
            }
        }
    }

    fn control(
        &mut self,
        reply: Option<ReplyId>,
        cmd: Command,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        if self.shutting_down {
            self.answer(
                reply,
                "",
                Outcome::Failed("the emperor is shutting down".into()),
                out,
            );
            return;
        }
        let name = match &cmd {
            Command::ReloadAll { just_started } => {
                let names: Vec<String> = self
                    .apps
                    .iter()
                    .filter(|(_, a)| a.state.serving().is_some() || a.state.pending().is_some())
                    .map(|(n, _)| n.clone())
                    .collect();
                if names.is_empty() {
                    self.answer(reply, "", Outcome::Done("no app to reload".into()), out);
                    return;
                }
                let group = reply.map(|outer| {
                    let id = self.next_group;
                    self.next_group += 1;
                    self.groups.insert(
                        id,
                        (
                            outer,
                            Group {
                                pending: names.len(),
                                failures: Vec::new(),
                            },
                        ),
                    );
                    id
                });
                for n in names {
                    let pending = self.apps[&n].state.pending().is_some();
                    if pending && just_started.contains(&n) {
                        // Its new generation is the reload: wait for it.
                        self.wait(&n, group, WaitFor::Ready);
                    } else {
                        self.control(group, Command::Reload(n), now, out);
                    }
                }
                return;
            }
            Command::Reload(n) | Command::Restart(n) | Command::Stop(n) | Command::Start(n) => {
                n.clone()
            }
        };
        let known = self.apps.get(&name).is_some_and(|a| !a.removed);
        if !known {
            self.answer(reply, &name, Outcome::UnknownApp(name.clone()), out);
            return;
        }
        let a = self.apps.get_mut(&name).expect("known app");
        match cmd {
            Command::Stop(_) => {
                a.held = true;
                self.fail_all_waiters(&name, "stopped by emperorctl stop", out);
                self.wait(&name, reply, WaitFor::Stopped);
                let a = &self.apps[&name];
                if a.procs.is_empty() {
                    if a.state != VassalState::Stopped {
                        self.set_state(&name, VassalState::Stopped);
                    }
                    self.resolve(
                        &name,
                        WaitFor::Stopped,
                        Outcome::Done("stopped".into()),
                        out,
                    );
                } else {
                    self.drain(&name, Signal::Term, now, out);
                }
            }
            Command::Reload(_) | Command::Restart(_) | Command::Start(_) => {
                let is_start = matches!(cmd, Command::Start(_));
                if !a.config_ok {
                    let msg = match (&a.unreadable, &a.config_error) {
                        (Some(why), _) => format!("the ini cannot be read: {why}"),
                        (None, Some(why)) => {
                            format!("the ini is invalid, nothing to start:\n{why}")
                        }
                        (None, None) => "the ini is invalid, nothing to start".to_owned(),
                    };
                    self.answer(reply, &name, Outcome::Failed(msg), out);
                    return;
                }
                if is_start && a.state.pending().is_some() {
                    // Starting (or reloading): answer once the pending generation serves.
                    self.wait(&name, reply, WaitFor::Ready);
                    return;
                }
                if is_start && a.state.serving().is_some() {
                    self.answer(reply, &name, Outcome::Done("already running".into()), out);
                    return;
                }
                if a.held && !is_start && !matches!(cmd, Command::Restart(_)) {
                    let msg = "the app is stopped; use `emperorctl start`".into();
                    self.answer(reply, &name, Outcome::Failed(msg), out);
                    return;
                }
                a.held = false;
                self.wait(&name, reply, WaitFor::Ready);
                self.begin(&name, now, out);
            }
            Command::ReloadAll { .. } => unreachable!("handled above"),
        }
    }

    fn shutdown(&mut self, force: bool, now: Millis, out: &mut Vec<Action>) {
        self.shutting_down = true;
        let names: Vec<String> = self.apps.keys().cloned().collect();
        for n in &names {
            self.fail_all_waiters(n, "the emperor is shutting down", out);
        }
        let signal = if force { Signal::Kill } else { Signal::Term };
        for n in &names {
            if !self.apps[n].procs.is_empty() {
                self.stop_all(n, signal, now, out);
                if self.apps[n].state != VassalState::Draining {
                    self.set_state(n, VassalState::Draining);
                }
            } else if self.apps[n].state != VassalState::Stopped
                && self.apps[n].state.kind() != crate::StateKind::Draining
            {
                self.set_state(n, VassalState::Stopped);
            }
        }
        if self.apps.values().all(|a| a.procs.is_empty()) {
            out.push(Action::Exit);
        }
    }
}
