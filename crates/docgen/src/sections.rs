//! Man page sections clap has no field for (FILES, CONFIGURATION, ENVIRONMENT, EXIT
//! STATUS, SEE ALSO), as troff, inserted before each page's VERSION section. The facts
//! are the README's (its emperor configuration table and exit codes).

/// The extra troff for the page of `command` (`emperor`, `vassal`, `emperorctl`, or an
/// emperorctl subcommand's `emperorctl-NAME`).
pub fn extra(command: &str) -> &'static str {
    match command {
        "emperor" => EMPEROR,
        "vassal" => VASSAL,
        "emperorctl" => EMPERORCTL,
        _ => SUBCOMMAND,
    }
}

const EMPEROR: &str = r#".SH CONFIGURATION
The \fB[emperor]\fR section of \fI/etc/emperor/emperor.ini\fR (uWSGI ini syntax).
Every key is also a flag, which wins over the file; unknown keys get a file:line warning.
.TP
\fBapps\-enabled\fR
Directory of app inis [default: /etc/emperor/apps\-enabled].
.TP
\fBrun\-dir\fR
App sockets go to \fIrun\-dir\fR/\fIapp\fR/socket [default: /run as root, else
$XDG_RUNTIME_DIR/emperor or /tmp/emperor\-\fIuid\fR].
.TP
\fBcontrol\-socket\fR
For emperorctl, mode 0660 [default: \fIrun\-dir\fR/emperor/control.sock].
.TP
\fBvassal\fR
The vassal binary [default: next to the emperor binary].
.TP
\fBreload\-mercy\fR
Seconds an old generation may drain before SIGKILL [default: 30].
.TP
\fBstart\-timeout\fR
Seconds a new generation has to send READY=1 [default: 60].
.TP
\fBbackoff\-min\fR, \fBbackoff\-max\fR
Crash backoff in seconds: the first retry at once, then doubling with 20% jitter; reset
after 10 s ready [default: 0.5, 60].
.TP
\fBvassal\-watchdog\fR
A ready vassal that sends no WATCHDOG=1 for this many seconds is killed and restarted;
0 disables [default: 30].
.TP
\fBvassals\-include\fR
An ini applied to every vassal after its own (repeatable).
.TP
\fBmax\-ini\-size\fR
Bytes (K, M, G suffixes) an app ini and each file it includes may have [default: 1M].
.SH FILES
.TP
\fI/etc/emperor/emperor.ini\fR
The emperor's settings.
.TP
\fI/etc/emperor/apps\-enabled/\fR
One \fB*.ini\fR per app, usually a symlink into \fI/etc/emperor/apps\-available/\fR; the
app is named after the file.
.TP
\fI/run/APP/socket\fR
Each app's socket, unless its ini names one.
.TP
\fI/run/emperor/control.sock\fR
The control socket.
.TP
\fI/lib/systemd/system/emperor.service\fR
The unit: \fBsystemctl reload emperor\fR sends SIGHUP.
.SH ENVIRONMENT
.TP
\fBEMPEROR_LOG\fR
Log filter (tracing syntax, e.g. \fBdebug\fR) [default: info].
.SH SEE ALSO
\fBemperorctl\fR(8), \fBvassal\fR(8), \fI/usr/share/doc/emperor/README.Debian\fR
"#;

const VASSAL: &str = r#".SH ENVIRONMENT
.TP
\fBVASSAL_LOG\fR
Log filter (tracing syntax, e.g. \fBdebug\fR) [default: info].
.TP
\fBLISTEN_FDS\fR, \fBLISTEN_PID\fR
Listening sockets passed by a supervisor (the emperor, or systemd socket activation).
.TP
\fBNOTIFY_SOCKET\fR
Where READY=1, STOPPING=1 and WATCHDOG=1 go (sd_notify).
.SH EXIT STATUS
0 after a graceful stop (SIGTERM), 1 for an invalid configuration or a failed start, 2
for usage errors, 22 when the app cannot be imported and \fBneed\-app\fR is on (the
default).
.SH SEE ALSO
\fBemperor\fR(8), \fBemperorctl\fR(8)
"#;

const EMPERORCTL: &str = r#".SH EXIT STATUS
.TP
\fB0\fR
Done.
.TP
\fB1\fR
Failed (the reason is printed), or an ini did not pass \fBcheck\fR.
.TP
\fB2\fR
Usage error.
.TP
\fB3\fR
The emperor is not running (nothing answers on the control socket).
.TP
\fB4\fR
Unknown app.
.SH FILES
.TP
\fI/run/emperor/control.sock\fR
The control socket of an emperor run as root.
.SH SEE ALSO
\fBemperor\fR(8), \fBvassal\fR(8)
"#;

const SUBCOMMAND: &str = r#".SH SEE ALSO
\fBemperorctl\fR(8), \fBemperor\fR(8)
"#;
