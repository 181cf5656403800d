use super::*;
use std::collections::BTreeSet;

#[test]
fn each_directory_state_has_its_steps() {
    use Step::*;
    let table = [
        (Staged::Nothing, vec![]),
        (Staged::Incomplete, vec![Discard]),
        (
            Staged::Prepared,
            vec![
                ClearReplaced,
                MarkMovingAside,
                MoveAside,
                MarkMovingIn,
                MoveIn,
                Discard,
            ],
        ),
        (
            Staged::MovingAside,
            vec![MoveAside, MarkMovingIn, MoveIn, Discard],
        ),
        (Staged::MovingIn, vec![MoveIn, Discard]),
    ];
    for (staged, expected) in table {
        assert_eq!(steps(staged, false), expected, "{staged:?}");
    }
    // Saving clears nothing earlier; otherwise the same.
    assert_eq!(
        steps(Staged::Prepared, true),
        vec![MarkMovingAside, MoveAside, MarkMovingIn, MoveIn, Discard]
    );
    assert_eq!(
        steps(Staged::MovingIn, true),
        steps(Staged::MovingIn, false)
    );
}

#[test]
fn state_files_korc_did_not_write_are_refused() {
    assert_eq!(Staged::parse("prepared\n").unwrap(), Staged::Prepared);
    assert_eq!(Staged::parse("moving-in").unwrap(), Staged::MovingIn);
    assert!(matches!(
        Staged::parse("prepar"),
        Err(AgentError::UnknownState(s)) if s == "prepar"
    ));
}

/// A data directory with the server's files and, when `copy`, a staged copy.
fn datadir(copy: Option<Staged>) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::write(p.join("ibdata1"), "old").unwrap();
    std::fs::create_dir(p.join("test")).unwrap();
    std::fs::write(p.join("test/t.ibd"), "old").unwrap();
    std::fs::write(p.join("mysql-bin.000001"), "old").unwrap();
    std::fs::create_dir(p.join("lost+found")).unwrap();
    if let Some(state) = copy {
        let s = staging(p);
        std::fs::create_dir(&s).unwrap();
        std::fs::write(s.join("ibdata1"), "new").unwrap();
        std::fs::create_dir(s.join("test")).unwrap();
        std::fs::write(s.join("test/t.ibd"), "new").unwrap();
        std::fs::write(
            s.join("xtrabackup_binlog_info"),
            "mysql-bin.000002\t342\t0-1-5",
        )
        .unwrap();
        std::fs::write(s.join("backup-my.cnf"), "[mysqld]").unwrap();
        if state != Staged::Incomplete {
            mark(p, state).unwrap();
        }
    }
    d
}

fn tree(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            let rel = path.strip_prefix(base).unwrap().display().to_string();
            if path.is_dir() {
                out.insert(format!("{rel}/"));
                walk(base, &path, out);
            } else {
                out.insert(format!("{rel}={}", std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The data directory after a complete swap.
fn swapped() -> BTreeSet<String> {
    set(&[
        "ibdata1=new",
        "test/",
        "test/t.ibd=new",
        "lost+found/",
        ".korc-replaced/",
        ".korc-replaced/ibdata1=old",
        ".korc-replaced/test/",
        ".korc-replaced/test/t.ibd=old",
        ".korc-replaced/mysql-bin.000001=old",
    ])
}

#[test]
fn without_a_copy_the_data_directory_is_left_alone() {
    let d = datadir(None);
    let before = tree(d.path());
    assert_eq!(restore(d.path()).unwrap(), vec![]);
    assert_eq!(tree(d.path()), before);
}

#[test]
fn an_incomplete_copy_is_deleted_and_the_data_kept() {
    let d = datadir(Some(Staged::Incomplete));
    assert_eq!(restore(d.path()).unwrap(), vec![Step::Discard]);
    assert_eq!(
        tree(d.path()),
        set(&[
            "ibdata1=old",
            "test/",
            "test/t.ibd=old",
            "mysql-bin.000001=old",
            "lost+found/"
        ])
    );
}

#[test]
fn a_prepared_copy_replaces_the_data_which_is_kept_aside() {
    let d = datadir(Some(Staged::Prepared));
    // An earlier copy's leftovers give way.
    std::fs::create_dir(d.path().join(REPLACED)).unwrap();
    std::fs::write(d.path().join(REPLACED).join("ancient"), "x").unwrap();
    restore(d.path()).unwrap();
    assert_eq!(tree(d.path()), swapped());
    assert_eq!(staged(d.path()).unwrap(), Staged::Nothing);
    // A second run changes nothing.
    assert_eq!(restore(d.path()).unwrap(), vec![]);
    assert_eq!(tree(d.path()), swapped());
}

#[test]
fn a_swap_interrupted_after_any_step_completes_on_the_next_run() {
    let all = steps(Staged::Prepared, false);
    for done in 0..all.len() {
        let d = datadir(Some(Staged::Prepared));
        for step in &all[..done] {
            run(d.path(), *step, None).unwrap();
        }
        restore(d.path()).unwrap();
        assert_eq!(
            tree(d.path()),
            swapped(),
            "interrupted after {:?}",
            &all[..done]
        );
    }
}

#[test]
fn a_swap_interrupted_in_the_middle_of_a_move_completes_on_the_next_run() {
    // Moving aside: one entry moved, the others not yet.
    let d = datadir(Some(Staged::Prepared));
    run(d.path(), Step::ClearReplaced, None).unwrap();
    run(d.path(), Step::MarkMovingAside, None).unwrap();
    std::fs::rename(
        d.path().join("ibdata1"),
        d.path().join(REPLACED).join("ibdata1"),
    )
    .unwrap();
    restore(d.path()).unwrap();
    assert_eq!(tree(d.path()), swapped());

    // Moving in: one entry in, the other still staged.
    let d = datadir(Some(Staged::Prepared));
    for step in &steps(Staged::Prepared, false)[..4] {
        run(d.path(), *step, None).unwrap();
    }
    std::fs::rename(staging(d.path()).join("test"), d.path().join("test")).unwrap();
    restore(d.path()).unwrap();
    assert_eq!(tree(d.path()), swapped());
}

/// The data directory after a complete swap that saved the old data as `name`.
fn swapped_saving(name: &str, earlier: &[&str]) -> BTreeSet<String> {
    let mut out = set(&["ibdata1=new", "test/", "test/t.ibd=new", "lost+found/"]);
    let base = format!(".korc-saved/{name}/data");
    out.extend(
        [
            ".korc-saved/".to_string(),
            format!(".korc-saved/{name}/"),
            format!(".korc-saved/{name}/errant-0-1.sql=events"),
            format!("{base}/"),
            format!("{base}/ibdata1=old"),
            format!("{base}/test/"),
            format!("{base}/test/t.ibd=old"),
            format!("{base}/mysql-bin.000001=old"),
        ]
        .into_iter()
        .chain(earlier.iter().map(|e| e.to_string())),
    );
    out
}

/// A staged copy that saves the old data as `name`, beside events already extracted
/// and an earlier copy's replaced data.
fn datadir_saving(name: &str) -> tempfile::TempDir {
    let d = datadir(Some(Staged::Prepared));
    let saved = crate::agent::save::saved_dir(d.path(), name);
    std::fs::create_dir_all(&saved).unwrap();
    std::fs::write(saved.join("errant-0-1.sql"), "events").unwrap();
    std::fs::create_dir(d.path().join(REPLACED)).unwrap();
    std::fs::write(d.path().join(REPLACED).join("ancient"), "x").unwrap();
    mark_save(d.path(), name).unwrap();
    d
}

#[test]
fn a_saving_swap_keeps_the_old_data_in_its_save_and_clears_nothing() {
    let earlier = [".korc-replaced/", ".korc-replaced/ancient=x"];
    let d = datadir_saving("20261130T094512Z");
    restore(d.path()).unwrap();
    assert_eq!(tree(d.path()), swapped_saving("20261130T094512Z", &earlier));
    assert_eq!(restore(d.path()).unwrap(), vec![]);

    // Interrupted after any step, it completes into the same save.
    let all = steps(Staged::Prepared, true);
    for done in 0..all.len() {
        let d = datadir_saving("s1");
        for step in &all[..done] {
            run(d.path(), *step, Some("s1")).unwrap();
        }
        restore(d.path()).unwrap();
        assert_eq!(
            tree(d.path()),
            swapped_saving("s1", &earlier),
            "interrupted after {:?}",
            &all[..done]
        );
    }
}
