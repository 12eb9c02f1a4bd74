#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Docker's image semantics over the image store, without HTTP: lookup
//! forms, tag moves leaving dangling images, rmi's untag/delete/conflict
//! rules, prune, load messages, save by id.

use std::io::Cursor;

use berth_engine::images::{DeleteItem, ImportRequest, ListRequest, PruneRequest};
use berth_engine::{Engine, EngineConfig, ErrorKind};
use berth_image::content::Manager;

fn engine(dir: &std::path::Path) -> Engine {
    Engine::open(EngineConfig {
        data_root: dir.join("data"),
        exec_root: dir.join("run"),
        shim: None,
        default_ulimits: Vec::new(),
        insecure_registries: Vec::new(),
        loopback_registries_only: true,
        network: Default::default(),
    })
    .unwrap()
}

fn rootfs(marker: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut f = tar::Header::new_ustar();
    f.set_mode(0o644);
    f.set_size(marker.len() as u64);
    b.append_data(&mut f, "marker", marker.as_bytes()).unwrap();
    b.into_inner().unwrap()
}

fn import(e: &Engine, repo: &str, marker: &str) -> String {
    e.images()
        .import(
            &ImportRequest {
                repo: repo.into(),
                changes: vec![format!("LABEL marker={marker}")],
                ..Default::default()
            },
            Cursor::new(rootfs(marker)),
        )
        .unwrap()
}

#[test]
fn lookup_forms() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let id = import(&e, "me/app:1", "a");
    let imgs = e.images();
    assert_eq!(imgs.lookup("me/app:1").unwrap().id, id);
    assert_eq!(imgs.lookup("docker.io/me/app:1").unwrap().id, id);
    assert_eq!(imgs.lookup(&id).unwrap().id, id);
    assert_eq!(imgs.lookup(&id[7..]).unwrap().id, id);
    assert_eq!(imgs.lookup(&id[7..19]).unwrap().id, id);
    assert_eq!(imgs.lookup(&id[..14]).unwrap().id, id);
    let manifest = imgs
        .lookup(&id)
        .unwrap()
        .resolved
        .manifest_desc
        .digest
        .clone();
    assert_eq!(imgs.lookup(&format!("me/app@{manifest}")).unwrap().id, id);
    let err = imgs.lookup(&format!("other@{manifest}")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = imgs.lookup("me/app:2").unwrap_err();
    assert_eq!(err.to_string(), "No such image: me/app:2");
    assert_eq!(imgs.lookup("Bad").unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn tag_moves_leave_dangling_images_and_rmi_follows_docker() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let imgs = e.images();
    let a = import(&e, "app:latest", "a");
    assert_eq!(imgs.tag("app", "other/app", "v1").unwrap(), "other/app:v1");
    // By id, with names in two repositories: refused without force.
    let err = imgs.delete(&a[7..19], false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        format!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            &a[7..19]
        )
    );
    // A second import under the same name moves the tag; untagging the
    // first image's last name deletes it.
    let b = import(&e, "app:latest", "b");
    assert_ne!(a, b);
    assert_eq!(
        imgs.delete("other/app:v1", false).unwrap(),
        vec![
            DeleteItem::Untagged("other/app:v1".into()),
            DeleteItem::Deleted(a.clone())
        ]
    );
    // A third import leaves b with no name: dangling, not deleted.
    let c = import(&e, "app:latest", "c");
    let dangling = imgs
        .list(&ListRequest {
            filters: [("dangling".to_owned(), vec!["true".to_owned()])].into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(dangling.len(), 1);
    assert_eq!(dangling[0].id, b);
    assert!(dangling[0].repo_tags().is_empty());
    // Prune takes it and its blobs.
    let r = imgs.prune(&PruneRequest::default()).unwrap();
    assert_eq!(r.deleted, vec![DeleteItem::Deleted(b.clone())]);
    assert!(r.space_reclaimed > 0);
    assert!(imgs.lookup(&b).is_err());
    // Two tags in one repository: deleting by id untags both.
    imgs.tag("app", "app", "2").unwrap();
    let out = imgs.delete(&c, false).unwrap();
    assert_eq!(
        out,
        vec![
            DeleteItem::Untagged("app:2".into()),
            DeleteItem::Untagged("app:latest".into()),
            DeleteItem::Deleted(c.clone()),
        ]
    );
    assert!(imgs.list(&ListRequest::default()).unwrap().is_empty());
    assert!(e.images().store().content().list().unwrap().is_empty());
}

#[test]
fn load_reports_moved_tags_and_save_by_id_has_no_tags() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let imgs = e.images();
    let a = import(&e, "app:latest", "a");
    let mut tar_a = Vec::new();
    let recs = imgs.save_records(std::slice::from_ref(&a)).unwrap();
    assert_eq!(recs, vec![a.clone()]);
    imgs.save(&recs, &mut tar_a).unwrap();
    let mut tar_named = Vec::new();
    imgs.save(&imgs.save_records(&["app".into()]).unwrap(), &mut tar_named)
        .unwrap();

    let other = tempfile::tempdir().unwrap();
    let e2 = engine(other.path());
    let b = import(&e2, "app:latest", "b");
    let out = e2.images().load(Cursor::new(&tar_a)).unwrap();
    assert_eq!(out.messages, vec![format!("Loaded image ID: {a}")]);
    let out = e2.images().load(Cursor::new(&tar_named)).unwrap();
    assert_eq!(
        out.messages,
        vec![
            format!(
                "The image app:latest already exists, renaming the old one with ID {b} to empty string"
            ),
            "Loaded image: app:latest".to_owned(),
        ]
    );
    // b is still there, dangling.
    let entry = e2.images().lookup(&b).unwrap();
    assert!(entry.dangling());
    assert_eq!(e2.images().lookup("app").unwrap().id, a);
}
