//! `hookwatch install`: writes hookwatch's hooks into Claude Code's settings, Codex CLI's
//! `hooks.json` or Gemini CLI's settings.
//!
//! All three keep hooks in the same shape (`{"hooks": {"<Event>": [{"matcher", "hooks":
//! [handler]}]}}`); they differ in the file, the events, and the timeout's unit (seconds for
//! Claude Code and Codex, milliseconds for Gemini). hookwatch's handler is the same observer
//! everywhere: `hookwatch send --agent …`, which decides nothing.
//!
//! The user's settings are theirs: every key and every hook of theirs stays where it was, in
//! its order. hookwatch adds one hook group of its own at the end of each event's list and
//! recognises its groups by their handler (a `hookwatch … send` command, or an http hook whose
//! URL ends in `/hooks/claude-code`), so a second install replaces them in place (the file is
//! identical) and `--uninstall` removes exactly them. The previous file is kept as a backup,
//! and the file is replaced atomically (write, then rename).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::domain::coding_agent::{CODEX_HOOKS, CodingAgent, GEMINI_OBSERVED_HOOKS};

/// The hook events in Claude Code's reference (2026-08) where a hook that prints nothing and
/// exits 0 changes nothing: 29 of its 31 ([`LEFT_OUT_EVENTS`] are the other two). Unknown
/// future ones are not needed for install, since the server stores whatever arrives.
pub(crate) const HOOK_EVENTS: [&str; 29] = [
    "SessionStart",
    "Setup",
    "UserPromptSubmit",
    "UserPromptExpansion",
    "PreToolUse",
    "PermissionRequest",
    "PermissionDenied",
    "PostToolUse",
    "PostToolUseFailure",
    "PostToolBatch",
    "Notification",
    "MessageDisplay",
    "SubagentStart",
    "SubagentStop",
    "TaskCreated",
    "TaskCompleted",
    "Stop",
    "StopFailure",
    "TeammateIdle",
    "InstructionsLoaded",
    "ConfigChange",
    "CwdChanged",
    "DirectoryAdded",
    "FileChanged",
    "PreCompact",
    "PostCompact",
    "Elicitation",
    "ElicitationResult",
    "SessionEnd",
];

/// Events `install` leaves alone, and why: a hook there is not an observer. A WorktreeCreate
/// hook *replaces* Claude Code's own worktree creation (it must make the worktree and print
/// its path, which `claude --worktree` reads), and WorktreeRemove is its counterpart; a silent
/// hook there broke `claude --worktree`. Installing again takes out an entry an older version
/// put there (`add_ours` removes all of hookwatch's groups first).
pub const LEFT_OUT_EVENTS: [(&str, &str); 2] = [
    (
        "WorktreeCreate",
        "its hook replaces Claude Code's own worktree creation and must print the new \
         worktree's path",
    ),
    (
        "WorktreeRemove",
        "the counterpart of WorktreeCreate: its hook is for the tool that made the worktree",
    ),
];

/// Claude Code's events whose hook groups take a tool matcher.
const TOOL_EVENTS: [&str; 5] = [
    "PreToolUse",
    "PostToolUse",
    "PostToolUseFailure",
    "PermissionRequest",
    "PermissionDenied",
];

/// The events an agent's hooks are installed for.
pub fn hook_events(agent: CodingAgent) -> &'static [&'static str] {
    match agent {
        CodingAgent::ClaudeCode => &HOOK_EVENTS,
        CodingAgent::Codex => &CODEX_HOOKS,
        CodingAgent::Gemini => &GEMINI_OBSERVED_HOOKS,
    }
}

/// Whether an agent's hook group for `event` takes a tool matcher (`*`, every tool).
fn takes_tool_matcher(agent: CodingAgent, event: &str) -> bool {
    match agent {
        CodingAgent::ClaudeCode => TOOL_EVENTS.contains(&event),
        CodingAgent::Codex => ["PreToolUse", "PostToolUse", "PermissionRequest"].contains(&event),
        CodingAgent::Gemini => ["BeforeTool", "AfterTool"].contains(&event),
    }
}

/// The timeout hookwatch's hook gets, in the agent's unit: 5 seconds (Gemini counts in
/// milliseconds). `send` itself gives up after 500 ms and spools.
fn hook_timeout(agent: CodingAgent) -> u64 {
    match agent {
        CodingAgent::Gemini => 5_000,
        CodingAgent::ClaudeCode | CodingAgent::Codex => 5,
    }
}

/// The user's Codex directory: `$CODEX_HOME`, else `~/.codex`.
pub fn codex_home(home: &Path) -> PathBuf {
    std::env::var_os("CODEX_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".codex"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    /// ~/.claude/settings.json
    User,
    /// .claude/settings.json in the current directory
    Project,
    /// .claude/settings.local.json in the current directory
    Local,
}

impl Scope {
    pub(crate) const ALL: [Scope; 3] = [Scope::User, Scope::Project, Scope::Local];

    /// Claude Code's settings file of this scope.
    pub fn settings_path(self, home: &Path, project: &Path) -> PathBuf {
        match self {
            Scope::User => home.join(".claude/settings.json"),
            Scope::Project => project.join(".claude/settings.json"),
            Scope::Local => project.join(".claude/settings.local.json"),
        }
    }

    /// The file an agent's hooks of this scope live in: Claude Code's settings, Codex's
    /// `hooks.json` (`$CODEX_HOME` or `~/.codex`, or the project's `.codex`), Gemini's
    /// `settings.json` (`~/.gemini` or the project's `.gemini`). Neither of the other two has a
    /// local scope.
    pub fn hooks_path(
        self,
        agent: CodingAgent,
        home: &Path,
        project: &Path,
    ) -> Result<PathBuf, String> {
        match (agent, self) {
            (CodingAgent::ClaudeCode, _) => Ok(self.settings_path(home, project)),
            (CodingAgent::Codex, Scope::User) => Ok(codex_home(home).join("hooks.json")),
            (CodingAgent::Codex, Scope::Project) => Ok(project.join(".codex/hooks.json")),
            (CodingAgent::Gemini, Scope::User) => Ok(home.join(".gemini/settings.json")),
            (CodingAgent::Gemini, Scope::Project) => Ok(project.join(".gemini/settings.json")),
            (agent, Scope::Local) => Err(format!(
                "{} has no local settings scope: use --scope user or --scope project",
                agent.name()
            )),
        }
    }

    /// The scopes an agent has.
    pub fn of(agent: CodingAgent) -> &'static [Scope] {
        match agent {
            CodingAgent::ClaudeCode => &Scope::ALL,
            CodingAgent::Codex | CodingAgent::Gemini => &[Scope::User, Scope::Project],
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Project => "project",
            Scope::Local => "local",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// A `hookwatch send` command per event: spools while the server is down.
    Command,
    /// Claude Code posts to `/hooks/claude-code` itself: no process per event, but events are
    /// lost while the server is down.
    Http,
}

/// The handler hookwatch installs.
#[derive(Debug, Clone)]
pub struct Handler {
    /// Whose hooks: the events, the file's shape and the timeout's unit follow.
    pub agent: CodingAgent,
    pub mode: Mode,
    /// Absolute path of the `hookwatch` binary (command mode).
    pub executable: PathBuf,
    pub server: String,
    /// Command mode: pass `--server` (when not the default).
    pub explicit_server: bool,
    /// Command mode: pass `--ca-cert` (an https server signed by a team's own CA).
    pub ca_cert: Option<PathBuf>,
    /// Http mode: send `Authorization: Bearer $HOOKWATCH_TOKEN`.
    pub token_header: bool,
    /// Command mode: the PermissionRequest hook waits this many seconds for an answer from the
    /// dashboard (`send --wait-for-decision`), `install --approvals`.
    pub approvals_s: Option<u64>,
}

impl Handler {
    fn to_json(&self, event: &str) -> Value {
        match self.mode {
            Mode::Command => {
                let mut command = format!("{} send", shell_quote(&self.executable));
                match self.agent {
                    CodingAgent::ClaudeCode => {}
                    CodingAgent::Codex => command.push_str(" --agent codex"),
                    CodingAgent::Gemini => command.push_str(" --agent gemini"),
                }
                if self.explicit_server {
                    command.push_str(&format!(
                        " --server {}",
                        shell_quote(Path::new(&self.server))
                    ));
                }
                if let Some(ca_cert) = &self.ca_cert {
                    command.push_str(&format!(" --ca-cert {}", shell_quote(ca_cert)));
                }
                match self.approvals_s.filter(|_| event == "PermissionRequest") {
                    // Claude Code's own timeout leaves the wait time to end first.
                    Some(wait) => {
                        command.push_str(&format!(" --wait-for-decision {wait}s"));
                        json!({ "type": "command", "command": command, "timeout": wait + 10 })
                    }
                    None if self.agent == CodingAgent::Gemini => json!({
                        "type": "command",
                        "name": "hookwatch",
                        "command": command,
                        "timeout": hook_timeout(self.agent),
                    }),
                    None => json!({
                        "type": "command",
                        "command": command,
                        "timeout": hook_timeout(self.agent),
                    }),
                }
            }
            Mode::Http => {
                let mut handler = json!({
                    "type": "http",
                    "url": format!("{}/hooks/claude-code", self.server.trim_end_matches('/')),
                    "timeout": 5,
                });
                if self.token_header {
                    handler["headers"] = json!({ "Authorization": "Bearer $HOOKWATCH_TOKEN" });
                    handler["allowedEnvVars"] = json!(["HOOKWATCH_TOKEN"]);
                }
                handler
            }
        }
    }
}

/// A path as one POSIX shell word (quoted only when it must be).
pub fn shell_quote(path: &Path) -> String {
    let text = path.to_string_lossy();
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-:+=,".contains(&b))
    {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Is this handler one of ours?
fn is_ours(handler: &Value) -> bool {
    match handler["type"].as_str() {
        Some("command") => handler["command"].as_str().is_some_and(|command| {
            let (program, rest) = split_program(command.trim_start());
            program
                .rsplit('/')
                .next()
                .is_some_and(|name| name.starts_with("hookwatch"))
                && rest.split_whitespace().next() == Some("send")
        }),
        Some("http") => handler["url"].as_str().is_some_and(|url| {
            url.split('?')
                .next()
                .is_some_and(|path| path.ends_with("/hooks/claude-code"))
        }),
        _ => false,
    }
}

/// The program (unquoted) and the rest of a command line.
fn split_program(command: &str) -> (&str, &str) {
    if let Some(quoted) = command.strip_prefix('\'') {
        return match quoted.find('\'') {
            Some(end) => (&quoted[..end], &quoted[end + 1..]),
            None => (quoted, ""),
        };
    }
    command
        .split_once(char::is_whitespace)
        .unwrap_or((command, ""))
}

fn group_is_ours(group: &Value) -> bool {
    group["hooks"]
        .as_array()
        .is_some_and(|hooks| !hooks.is_empty() && hooks.iter().all(is_ours))
}

/// What a change did, for the message the command prints.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub added: usize,
    pub removed: usize,
}

/// Removes hookwatch's groups from `settings`; removes event lists and the `hooks` object
/// that become empty because of it.
pub fn remove_ours(settings: &mut Map<String, Value>) -> usize {
    let Some(Value::Object(hooks)) = settings.get_mut("hooks") else {
        return 0;
    };
    let mut removed = 0;
    hooks.retain(|_, groups| {
        let Value::Array(list) = groups else {
            return true;
        };
        let before = list.len();
        list.retain(|group| !group_is_ours(group));
        removed += before - list.len();
        !(list.is_empty() && before > 0)
    });
    if hooks.is_empty() && removed > 0 {
        settings.remove("hooks");
    }
    removed
}

/// Adds hookwatch's group to every event of its agent (after removing any it had before).
pub fn add_ours(settings: &mut Map<String, Value>, handler: &Handler) -> Change {
    let removed = remove_ours(settings);
    let hooks = settings
        .entry("hooks")
        .or_insert_with(|| Value::Object(Map::new()));
    if !hooks.is_object() {
        *hooks = Value::Object(Map::new());
    }
    let hooks = hooks.as_object_mut().expect("just made an object");
    let events = hook_events(handler.agent);
    for &event in events {
        let mut group = Map::new();
        if takes_tool_matcher(handler.agent, event) {
            group.insert("matcher".into(), json!("*"));
        }
        group.insert("hooks".into(), json!([handler.to_json(event)]));
        let list = hooks.entry(event).or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        list.as_array_mut()
            .expect("just made an array")
            .push(Value::Object(group));
    }
    Change {
        added: events.len(),
        removed,
    }
}

/// How many events have a hookwatch hook, and in which mode.
pub(crate) fn installed(settings: &Map<String, Value>) -> (usize, Option<&'static str>) {
    let mut events = 0;
    let mut mode = None;
    if let Some(Value::Object(hooks)) = settings.get("hooks") {
        for groups in hooks.values() {
            let ours = groups
                .as_array()
                .into_iter()
                .flatten()
                .find(|g| group_is_ours(g));
            if let Some(group) = ours {
                events += 1;
                mode = match group["hooks"][0]["type"].as_str() {
                    Some("http") => Some("http"),
                    _ => Some("command"),
                };
            }
        }
    }
    (events, mode)
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("could not read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0} is not a JSON object ({1}); fix or move it first, nothing was changed")]
    NotSettings(PathBuf, String),
    #[error("could not write {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// Reads a settings file; a missing file is an empty object.
pub fn read_settings(path: &Path) -> Result<Option<Map<String, Value>>, InstallError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(InstallError::Read(path.to_owned(), e)),
    };
    if text.trim().is_empty() {
        return Ok(Some(Map::new()));
    }
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(InstallError::NotSettings(
            path.to_owned(),
            "not an object".into(),
        )),
        Err(e) => Err(InstallError::NotSettings(path.to_owned(), e.to_string())),
    }
}

/// Replaces `path` with `text` atomically (written to `temp`, then renamed), keeping the
/// file's permissions (a settings file the user keeps private stays private); with `secret`
/// (a token in it), readable by its owner only.
pub(crate) fn replace_file(
    path: &Path,
    temp: &Path,
    text: &str,
    secret: bool,
) -> std::io::Result<()> {
    std::fs::write(temp, text)?;
    if let Ok(metadata) = std::fs::metadata(path) {
        std::fs::set_permissions(temp, metadata.permissions())?;
    }
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(temp, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    std::fs::rename(temp, path)
}

/// Applies `change` to the settings file; writes (with a backup) only if something changed.
/// Returns whether the file changed and the backup's path.
pub fn edit_settings(
    path: &Path,
    change: impl FnOnce(&mut Map<String, Value>),
) -> Result<(bool, Option<PathBuf>), InstallError> {
    let original = read_settings(path)?;
    let mut settings = original.clone().unwrap_or_default();
    change(&mut settings);
    if original.as_ref() == Some(&settings) || (original.is_none() && settings.is_empty()) {
        return Ok((false, None));
    }
    let write_error = |e| InstallError::Write(path.to_owned(), e);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    let backup = if original.is_some() {
        let backup = path.with_extension("json.hookwatch-backup");
        std::fs::copy(path, &backup).map_err(write_error)?;
        Some(backup)
    } else {
        None
    };
    let mut text =
        serde_json::to_string_pretty(&Value::Object(settings)).expect("a JSON object serializes");
    text.push('\n');
    replace_file(
        path,
        &path.with_extension("json.hookwatch-tmp"),
        &text,
        false,
    )
    .map_err(write_error)?;
    Ok((true, backup))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(mode: Mode) -> Handler {
        Handler {
            agent: CodingAgent::ClaudeCode,
            mode,
            executable: PathBuf::from("/usr/local/bin/hookwatch"),
            server: "http://127.0.0.1:4000".into(),
            explicit_server: false,
            ca_cert: None,
            token_header: false,
            approvals_s: None,
        }
    }

    #[test]
    fn an_https_server_and_its_ca_are_passed_to_send() {
        let handler = Handler {
            server: "https://hooks.team.internal".into(),
            explicit_server: true,
            ca_cert: Some(PathBuf::from("/etc/team ca.pem")),
            ..handler(Mode::Command)
        };
        assert_eq!(
            handler.to_json("Stop")["command"],
            "/usr/local/bin/hookwatch send --server https://hooks.team.internal \
             --ca-cert '/etc/team ca.pem'"
        );
    }

    #[test]
    fn approvals_make_the_permission_request_hook_wait_for_a_decision() {
        let mut settings = Map::new();
        let handler = Handler {
            approvals_s: Some(60),
            ..handler(Mode::Command)
        };
        add_ours(&mut settings, &handler);
        let permission = &settings["hooks"]["PermissionRequest"][0]["hooks"][0];
        assert_eq!(
            permission["command"],
            "/usr/local/bin/hookwatch send --wait-for-decision 60s"
        );
        assert_eq!(permission["timeout"], 70);
        let pre = &settings["hooks"]["PreToolUse"][0]["hooks"][0];
        assert_eq!(pre["command"], "/usr/local/bin/hookwatch send");
        assert!(is_ours(permission), "uninstall finds it");
        assert_eq!(remove_ours(&mut settings), HOOK_EVENTS.len());
    }

    #[test]
    fn worktree_hooks_are_left_alone_and_an_older_install_of_them_is_taken_out() {
        let mut settings: Map<String, Value> = serde_json::from_value(json!({
            "hooks": {
                "WorktreeCreate": [
                    { "hooks": [{ "type": "command", "command": "make-worktree.sh" }] },
                    { "hooks": [{ "type": "command", "command": "/usr/local/bin/hookwatch send" }] }
                ],
                "WorktreeRemove": [
                    { "hooks": [{ "type": "command", "command": "/usr/local/bin/hookwatch send" }] }
                ]
            }
        }))
        .unwrap();
        add_ours(&mut settings, &handler(Mode::Command));
        let hooks = settings["hooks"].as_object().unwrap();
        assert_eq!(
            hooks["WorktreeCreate"],
            json!([{ "hooks": [{ "type": "command", "command": "make-worktree.sh" }] }]),
            "the user's own worktree hook stays, hookwatch's goes"
        );
        assert!(!hooks.contains_key("WorktreeRemove"), "{hooks:?}");
        for (event, _) in LEFT_OUT_EVENTS {
            assert!(!HOOK_EVENTS.contains(&event));
        }
        assert_eq!(HOOK_EVENTS.len() + LEFT_OUT_EVENTS.len(), 31);
    }

    fn users_settings() -> Map<String, Value> {
        serde_json::from_value(json!({
            "model": "opus",
            "hooks": {
                "PreToolUse": [
                    { "matcher": "Bash", "hooks": [{ "type": "command", "command": "my-guard.sh" }] }
                ],
                "Stop": [
                    { "hooks": [{ "type": "command", "command": "notify-send done" }] }
                ]
            },
            "permissions": { "allow": ["Bash(ls)"] }
        }))
        .unwrap()
    }

    #[test]
    fn install_appends_after_the_users_hooks_and_is_idempotent() {
        let mut settings = users_settings();
        add_ours(&mut settings, &handler(Mode::Command));
        let pre = settings["hooks"]["PreToolUse"].as_array().unwrap();
        assert_eq!(pre.len(), 2);
        assert_eq!(
            pre[0]["hooks"][0]["command"], "my-guard.sh",
            "theirs stays first"
        );
        assert_eq!(
            pre[1]["hooks"][0]["command"],
            "/usr/local/bin/hookwatch send"
        );
        assert_eq!(pre[1]["matcher"], "*");
        assert_eq!(installed(&settings), (29, Some("command")));
        let once = settings.clone();
        let change = add_ours(&mut settings, &handler(Mode::Command));
        assert_eq!(
            change,
            Change {
                added: 29,
                removed: 29
            }
        );
        assert_eq!(settings, once);
        assert_eq!(
            serde_json::to_string(&settings).unwrap(),
            serde_json::to_string(&once).unwrap(),
            "byte for byte"
        );
    }

    #[test]
    fn uninstall_removes_exactly_what_install_added() {
        let mut settings = users_settings();
        add_ours(&mut settings, &handler(Mode::Http));
        assert_eq!(installed(&settings), (29, Some("http")));
        assert_eq!(remove_ours(&mut settings), 29);
        assert_eq!(settings, users_settings());
        let mut empty = Map::new();
        add_ours(&mut empty, &handler(Mode::Command));
        remove_ours(&mut empty);
        assert!(empty.is_empty());
    }

    #[test]
    fn only_hookwatch_handlers_are_recognised() {
        assert!(is_ours(
            &json!({"type": "command", "command": "/opt/bin/hookwatch send --server http://x:1"})
        ));
        assert!(is_ours(
            &json!({"type": "command", "command": "'/my dir/hookwatch' send"})
        ));
        assert!(is_ours(
            &json!({"type": "http", "url": "http://h:4000/hooks/claude-code?app=a"})
        ));
        assert!(!is_ours(
            &json!({"type": "command", "command": "hookwatch-lint.sh check"})
        ));
        assert!(!is_ours(
            &json!({"type": "command", "command": "python3 send_event.py"})
        ));
        assert!(!is_ours(&json!({"type": "http", "url": "http://h/other"})));
    }
}
