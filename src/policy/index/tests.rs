use super::*;
use crate::policy::{self, PlainReader};
use proptest::prelude::*;

const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByjXTZyhMNg4FJ507SAZ4IU8ihtGHkvqwZqcfdhmePz ed25519@test";

/// A root-owned directory only root can write (as the trust checks want),
/// holding a policy.
struct Dir {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Dir {
    fn new() -> Dir {
        let tmp = tempfile::Builder::new()
            .prefix("gate-index-")
            .tempdir()
            .unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        Dir { _tmp: tmp, root }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.root.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn policy(&self, text: &str) -> (PathBuf, Policy) {
        let path = self.write("policy.toml", text);
        let p = policy::load(&path, &PlainReader).unwrap_or_else(|e| panic!("{e}\n{text}"));
        (path, p)
    }
}

fn compile(p: &Policy) -> Vec<u8> {
    let bytes = build(p, &crate::cmd::authorized_keys::key_table(p)).unwrap();
    write(&p.source, &bytes).unwrap();
    bytes
}

fn trusted() -> bool {
    nix::unistd::geteuid().is_root()
}

const SAMPLE: &str = r#"
[gate]
account = "mirror"
wait_for_slot = "250ms"
sandbox = "off"

[modules.www]
path = "/srv/www"
comment = "web"

[modules.up]
path = "/srv/up"
read_only = false
max_connections = 3
munge_links = false

[modules.drop]
path = "/srv/drop"
read_only = false
write_only = true
munge_links = true

[clients.a]
modules = ["www", "up"]
from = ["192.0.2.1", "2001:db8::/32"]
key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByjXTZyhMNg4FJ507SAZ4IU8ihtGHkvqwZqcfdhmePz ed25519@test"
note = "n"

[clients.b]
modules = ["drop"]

[clients.t]
trigger = "job"

[triggers.job]
command = ["/bin/true", "x"]
args = ["sync:*"]
env = { A = "1" }
timeout = "6h"
log = "/var/log/x"
"#;

#[test]
fn answers_each_client_as_the_policy_does() {
    if !trusted() {
        return;
    }
    let d = Dir::new();
    let (path, p) = d.policy(SAMPLE);
    compile(&p);
    let ix = Index::open(&path).unwrap();
    for c in ["a", "b", "t", "nobody", "", "a\0"] {
        assert_eq!(ix.policy_for(c).unwrap(), expected_for(&p, c), "{c}");
    }
    // The writable module that keeps links is in every client's part.
    assert!(ix.policy_for("b").unwrap().modules.contains_key("up"));
    let fp = crate::cmd::authorized_keys::fingerprint(ED25519).unwrap();
    assert_eq!(ix.clients_with_key(&fp).unwrap(), vec!["a".to_string()]);
    assert!(ix.clients_with_key(&[7; 32]).unwrap().is_empty());
    assert_eq!(load_session(&path, "a").1, Via::Index);
}

#[test]
fn a_changed_source_makes_it_stale() {
    if !trusted() {
        return;
    }
    let d = Dir::new();
    let (path, p) = d.policy(SAMPLE);
    compile(&p);
    assert!(Index::open(&path).is_ok());
    // The same bytes again: a new mtime and ctime.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&path, SAMPLE).unwrap();
    assert!(matches!(Index::open(&path), Err(Unusable::Stale(_))));
    let (got, via) = load_session(&path, "a");
    assert!(matches!(via, Via::Toml(Unusable::Stale(_))));
    assert_eq!(got.unwrap(), p);
}

#[test]
fn a_new_drop_in_makes_it_stale() {
    if !trusted() {
        return;
    }
    let d = Dir::new();
    std::fs::create_dir(d.root.join("conf.d")).unwrap();
    let text = format!(
        "[gate]\ninclude = [\"{}/conf.d/*.toml\"]\n[modules.www]\npath = \"/srv/www\"\n",
        d.root.display()
    );
    d.write("conf.d/a.toml", "[clients.a]\nmodules = [\"www\"]\n");
    let (path, p) = d.policy(&text);
    compile(&p);
    assert_eq!(Index::open(&path).unwrap().files.len(), 2);
    std::thread::sleep(std::time::Duration::from_millis(20));
    d.write("conf.d/b.toml", "[clients.b]\nmodules = [\"www\"]\n");
    assert!(matches!(Index::open(&path), Err(Unusable::Stale(_))));
}

#[test]
fn missing_untrusted_or_for_another_policy() {
    if !trusted() {
        return;
    }
    let d = Dir::new();
    let (path, p) = d.policy(SAMPLE);
    assert_eq!(Index::open(&path).unwrap_err(), Unusable::Missing);
    compile(&p);
    let ix = index_path(&path);
    std::os::unix::fs::chown(&ix, Some(4242), None).unwrap();
    assert!(matches!(Index::open(&path), Err(Unusable::Untrusted(_))));
    std::os::unix::fs::chown(&ix, Some(0), None).unwrap();
    std::fs::set_permissions(&ix, std::os::unix::fs::PermissionsExt::from_mode(0o664)).unwrap();
    assert!(matches!(Index::open(&path), Err(Unusable::Untrusted(_))));
    std::fs::set_permissions(&ix, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    assert!(Index::open(&path).is_ok());
    // Copied beside another policy.
    let other = d.write("other.toml", SAMPLE);
    std::fs::copy(&ix, index_path(&other)).unwrap();
    assert!(matches!(Index::open(&other), Err(Unusable::Stale(_))));
}

/// Every flipped byte and every truncation: the index is refused, or
/// answers exactly as the policy does. Never anything else.
#[test]
fn corruption_is_caught_or_harmless() {
    if !trusted() {
        return;
    }
    let d = Dir::new();
    let (path, p) = d.policy(SAMPLE);
    let good = compile(&p);
    let ix = index_path(&path);
    let fp = crate::cmd::authorized_keys::fingerprint(ED25519).unwrap();
    let check = |bytes: &[u8], what: &str| {
        std::fs::write(&ix, bytes).unwrap();
        let Ok(opened) = Index::open(&path) else {
            return;
        };
        for c in ["a", "b", "t", "zz"] {
            if let Ok(got) = opened.policy_for(c) {
                assert_eq!(got, expected_for(&p, c), "{what}: client {c}");
            }
        }
        if let Ok(names) = opened.clients_with_key(&fp) {
            assert_eq!(names, vec!["a".to_string()], "{what}");
        }
    };
    for i in 0..good.len() {
        let mut b = good.clone();
        b[i] ^= 0x01;
        check(&b, &format!("byte {i} flipped"));
    }
    for n in 0..good.len() {
        check(&good[..n], &format!("cut to {n} bytes"));
        assert!(Index::open(&path).is_err(), "cut to {n} bytes was used");
    }
}

#[test]
fn account_names() {
    for ok in ["mirror", "backup-1", "a.b_c"] {
        assert_eq!(check_account(ok), Ok(()), "{ok}");
    }
    for bad in ["", "-x", "a b", "a/b", &"x".repeat(33)] {
        assert!(check_account(bad).is_err(), "{bad}");
    }
}

// ---------------------------------------------------------------------------
// Generated policies: the index answers exactly as the parsed TOML
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct GenModule {
    read_only: bool,
    write_only: bool,
    delete: bool,
    munge: Option<bool>,
    max_conn: u32,
    comment: bool,
}

#[derive(Debug, Clone)]
struct GenClient {
    modules: Vec<usize>,
    from: Vec<u8>,
    key: bool,
    trigger: bool,
    note: bool,
}

fn gen_module() -> impl Strategy<Value = GenModule> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(any::<bool>()),
        0u32..5,
        any::<bool>(),
    )
        .prop_map(|(ro, wo, del, munge, max_conn, comment)| GenModule {
            read_only: ro,
            write_only: wo && !ro,
            delete: del && !ro,
            munge,
            max_conn,
            comment,
        })
}

fn gen_client() -> impl Strategy<Value = GenClient> {
    (
        proptest::collection::vec(0usize..8, 0..4),
        proptest::collection::vec(any::<u8>(), 0..3),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(modules, from, key, trigger, note)| GenClient {
            modules,
            from,
            key,
            trigger,
            note,
        })
}

fn render(modules: &[GenModule], clients: &[GenClient], dropin: Option<&Path>) -> (String, String) {
    let mut main = String::from("[gate]\naccount = \"m\"\n");
    if let Some(dir) = dropin {
        main.push_str(&format!("include = [\"{}/*.toml\"]\n", dir.display()));
    }
    main.push_str("[triggers.job]\ncommand = [\"/bin/true\"]\nargs = [\"a*\"]\n");
    for (i, m) in modules.iter().enumerate() {
        main.push_str(&format!(
            "[modules.m{i}]\npath = \"/srv/m{i}\"\nread_only = {}\nwrite_only = {}\ndelete = {}\nmax_connections = {}\n",
            m.read_only, m.write_only, m.delete, m.max_conn
        ));
        if let Some(munge) = m.munge {
            main.push_str(&format!("munge_links = {munge}\n"));
        }
        if m.comment {
            main.push_str(&format!("comment = \"module {i}\"\n"));
        }
    }
    let mut second = String::new();
    for (i, c) in clients.iter().enumerate() {
        let out = if dropin.is_some() && i % 2 == 1 {
            &mut second
        } else {
            &mut main
        };
        let mut mods: Vec<String> = c
            .modules
            .iter()
            .filter(|&&m| m < modules.len())
            .map(|m| format!("\"m{m}\""))
            .collect();
        mods.dedup();
        mods.sort();
        mods.dedup();
        out.push_str(&format!(
            "[clients.c{i}]\nmodules = [{}]\n",
            mods.join(", ")
        ));
        let from: Vec<String> = c
            .from
            .iter()
            .map(|b| {
                if b % 2 == 0 {
                    format!("\"198.51.100.{b}\"")
                } else {
                    format!("\"10.{b}.0.0/16\"")
                }
            })
            .collect();
        out.push_str(&format!("from = [{}]\n", from.join(", ")));
        if c.key || i == 0 {
            out.push_str(&format!("key = \"{ED25519}\"\n"));
        }
        if c.trigger || mods.is_empty() {
            out.push_str("trigger = \"job\"\n");
        }
        if c.note {
            out.push_str("note = \"client note\"\n");
        }
    }
    (main, second)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn compiled_answers_like_the_toml(
        modules in proptest::collection::vec(gen_module(), 0..8),
        clients in proptest::collection::vec(gen_client(), 1..10),
        dropin in any::<bool>(),
    ) {
        if !trusted() {
            return Ok(());
        }
        let d = Dir::new();
        let conf = d.root.join("conf.d");
        std::fs::create_dir(&conf).unwrap();
        let (main, second) = render(&modules, &clients, dropin.then_some(conf.as_path()));
        if dropin {
            d.write("conf.d/b.toml", &second);
        }
        let (path, p) = d.policy(&main);
        compile(&p);
        let ix = Index::open(&path).unwrap();
        let caps = crate::decide::RsyncCaps { confine_root: true, drop_d: true };
        let requests: [&[u8]; 4] = [
            b"rsync --server --sender -logDtpre.iLsfxCIvu . m0/",
            b"rsync --server -logDtpre.iLsfxCIvu --delete . m1/x",
            b"rsync --server --daemon .",
            b"a1",
        ];
        let names: Vec<String> = p.clients.keys().cloned().chain(["nobody".into()]).collect();
        for name in &names {
            let part = ix.policy_for(name).unwrap();
            prop_assert_eq!(&part, &expected_for(&p, name));
            for r in requests {
                let req = crate::request::parse_command(r);
                for conn in [None, Some(crate::request::conn::Conn { addr: "198.51.100.7".parse().unwrap(), port: 1 })] {
                    let ctx = |policy| crate::decide::Context {
                        policy,
                        client: name,
                        conn,
                        server: crate::decide::Server { caps, sandbox: true },
                    };
                    let full = crate::decide::decide(&ctx(&p), req.as_ref());
                    let compiled = crate::decide::decide(&ctx(&part), req.as_ref());
                    prop_assert_eq!(format!("{full:?}"), format!("{compiled:?}"));
                }
            }
        }
        for (fp, name) in crate::cmd::authorized_keys::key_table(&p) {
            prop_assert!(ix.clients_with_key(&fp).unwrap().contains(&name));
        }
    }
}
