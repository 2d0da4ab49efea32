//! Commit order is the library's job (DESIGN.md promise 6): parents before children on insert,
//! children before parents on delete, a moved child between its new parent's insert and its old
//! parent's delete, deletes before inserts that reuse a unique value, cycles refused. Real
//! foreign keys are declared in the schema on every backend (SQLite with foreign_keys = ON).

mod common;

use common::*;
use diesel::prelude::*;
use uow::prelude::*;

backend_tests! {
    fn a_new_child_of_a_new_parent_gets_the_parents_generated_key(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        // The child is registered first: order is not the caller's job.
        let book = uow.register_new(Book { id: 0, author_id: 0, title: "Dune".into() })?;
        let author = uow.register_new(Author { id: 0, name: "Herbert".into() })?;
        uow.set_parent(&book, &author)?;
        let report = uow.commit(&mut db.conn)?;
        assert_eq!((report.inserted("authors"), report.inserted("books")), (1, 1));
        let author_id = uow.get(&author)?.id;
        assert_ne!(author_id, 0);
        assert_eq!(uow.get(&book)?.author_id, author_id, "foreign key written back");
        assert_eq!(uow.state(&book)?, EntityState::Clean);
        let rows: Vec<Book> = books::table.load(&mut db.conn)?;
        assert_eq!(rows, [uow.get(&book)?.clone()]);
        Ok(())
    }

    fn a_failed_commit_leaves_the_childs_foreign_key_as_before(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let author = uow.register_new(Author { id: 0, name: "Herbert".into() })?;
        let book = uow.register_new(Book { id: 0, author_id: 0, title: "Dune".into() })?;
        uow.set_parent(&book, &author)?;
        let bad = uow.register_new(account("broke", -1))?; // fails after both inserts
        let before = (observe(&uow, &author), observe(&uow, &book));
        assert!(uow.commit(&mut db.conn).is_err());
        assert_eq!((observe(&uow, &author), observe(&uow, &book)), before);
        assert_eq!(uow.get(&book)?.author_id, 0);
        let count: i64 = books::table.count().get_result(&mut db.conn)?;
        assert_eq!(count, 0);
        uow.get_mut(&bad)?.balance = 1;
        uow.commit(&mut db.conn)?;
        assert_eq!(uow.get(&book)?.author_id, uow.get(&author)?.id);
        Ok(())
    }

    fn children_are_deleted_before_their_parent(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let author = uow.register_new(Author { id: 0, name: "Herbert".into() })?;
        let books: Vec<_> = (0..3).map(|i| uow.register_new(Book { id: 0, author_id: 0, title: format!("B{i}") })).collect::<Result<_, _>>()?;
        for b in &books {
            uow.set_parent(b, &author)?;
        }
        uow.commit(&mut db.conn)?;
        // Parent registered for removal first.
        uow.register_removed(&author)?;
        for b in &books {
            uow.register_removed(b)?;
        }
        let log = db.record();
        let report = uow.commit(&mut db.conn)?;
        assert_eq!((report.deleted("books"), report.deleted("authors")), (3, 1));
        let writes = log.writes();
        assert_eq!(writes.len(), 2, "one DELETE per table: {writes:?}");
        assert!(writes[0].to_lowercase().contains("books"), "{writes:?}");
        let count: i64 = authors::table.count().get_result(&mut db.conn)?;
        assert_eq!(count, 0);
        Ok(())
    }

    fn a_moved_child_is_updated_after_its_new_parent_and_before_its_old_parent_goes(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let old = uow.register_new(Author { id: 0, name: "Old".into() })?;
        let book = uow.register_new(Book { id: 0, author_id: 0, title: "Moving".into() })?;
        uow.set_parent(&book, &old)?;
        uow.commit(&mut db.conn)?;

        uow.register_removed(&old)?;
        let new = uow.register_new(Author { id: 0, name: "New".into() })?;
        uow.set_parent(&book, &new)?;
        let log = db.record();
        uow.commit(&mut db.conn)?;
        let writes: Vec<String> = log.writes().iter().map(|s| s.to_lowercase()).collect();
        assert_eq!(writes.len(), 3, "{writes:?}");
        assert!(writes[0].starts_with("insert") && writes[0].contains("authors"), "{writes:?}");
        assert!(writes[1].starts_with("update") && writes[1].contains("author_id"), "{writes:?}");
        assert!(writes[2].starts_with("delete") && writes[2].contains("authors"), "{writes:?}");
        let new_id = uow.get(&new)?.id;
        assert_eq!(uow.get(&book)?.author_id, new_id);
        let rows: Vec<(i32, String)> = authors::table.select((authors::id, authors::name)).load(&mut db.conn)?;
        assert_eq!(rows, [(new_id, "New".to_string())]);
        let book_row: Book = books::table.first(&mut db.conn)?;
        assert_eq!(book_row.author_id, new_id);
        Ok(())
    }

    fn a_unique_value_freed_by_a_delete_can_be_reused_in_the_same_commit(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let a = uow.register_new(Tag { code: "a".into(), label: "Shared".into() })?;
        uow.commit(&mut db.conn)?;
        uow.register_new(Tag { code: "b".into(), label: "Shared".into() })?;
        uow.register_removed(&a)?;
        uow.commit(&mut db.conn)?;
        let rows: Vec<Tag> = tags::table.load(&mut db.conn)?;
        assert_eq!(rows, [Tag { code: "b".into(), label: "Shared".into() }]);
        Ok(())
    }

    fn a_self_referencing_tree_is_inserted_level_by_level(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let leaf = uow.register_new(Node { id: 0, parent_id: None, name: "leaf".into() })?;
        let mid = uow.register_new(Node { id: 0, parent_id: None, name: "mid".into() })?;
        let root = uow.register_new(Node { id: 0, parent_id: None, name: "root".into() })?;
        uow.set_parent(&leaf, &mid)?;
        uow.set_parent(&mid, &root)?;
        let log = db.record();
        uow.commit(&mut db.conn)?;
        assert_eq!(log.writes().len(), 3, "{:?}", log.writes());
        let (root_id, mid_id) = (uow.get(&root)?.id, uow.get(&mid)?.id);
        assert_eq!(uow.get(&mid)?.parent_id, Some(root_id));
        assert_eq!(uow.get(&leaf)?.parent_id, Some(mid_id));
        let rows: Vec<Node> = nodes::table.order(nodes::id).load(&mut db.conn)?;
        assert_eq!(rows.len(), 3);
        for row in rows {
            let held = uow.find::<Node>(&row.id).ok_or("held")?;
            assert_eq!(uow.get(&held)?, &row);
        }
        Ok(())
    }

    fn a_true_cycle_is_an_error_naming_the_entities_and_writes_nothing(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let a = uow.register_new(Node { id: 0, parent_id: None, name: "a".into() })?;
        let b = uow.register_new(Node { id: 0, parent_id: None, name: "b".into() })?;
        uow.register_new(Author { id: 0, name: "bystander".into() })?;
        uow.set_parent(&a, &b)?;
        uow.set_parent(&b, &a)?;
        let before = (observe(&uow, &a), observe(&uow, &b));
        let log = db.record();
        let error = uow.commit(&mut db.conn).expect_err("cycle");
        match &error {
            uow::Error::Cycle { entities } => {
                assert_eq!(entities.len(), 2, "{entities:?}");
                assert!(entities.iter().all(|e| e.contains("Node")), "{entities:?}");
            }
            other => panic!("expected a cycle, got {other}"),
        }
        assert!(error.to_string().contains("cycle"), "{error}");
        assert!(log.all().is_empty(), "nothing sent: {:?}", log.all());
        assert_eq!((observe(&uow, &a), observe(&uow, &b)), before);
        Ok(())
    }

    fn set_parent_misuse(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let book = uow.register_new(Book { id: 0, author_id: 0, title: "t".into() })?;
        let node = uow.register_new(Node { id: 0, parent_id: None, name: "n".into() })?;
        let error = uow.set_parent(&book, &node).expect_err("no relation");
        assert!(matches!(error, uow::Error::NoRelation { child: "Book", parent: "Node" }), "{error}");
        // A parent whose key is known is written into the foreign key at once.
        let author = uow.register_clean(Author { id: 41, name: "known".into() })?;
        uow.set_parent(&book, &author)?;
        assert_eq!(uow.get(&book)?.author_id, 41);
        let _ = db;
        Ok(())
    }

    fn refresh_drops_a_pending_set_parent(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let old = uow.register_new(Author { id: 0, name: "Old".into() })?;
        let book = uow.register_new(Book { id: 0, author_id: 0, title: "t".into() })?;
        uow.set_parent(&book, &old)?;
        uow.commit(&mut db.conn)?;
        let new = uow.register_new(Author { id: 0, name: "New".into() })?;
        uow.set_parent(&book, &new)?;
        let preview = uow.plan()?.to_string();
        assert!(preview.contains("author_id: ") && preview.contains(" -> key of new Author"), "{preview}");
        uow.refresh(&mut db.conn, &book)?;
        assert_eq!(uow.state(&book)?, EntityState::Clean);
        let log = db.record();
        uow.commit(&mut db.conn)?;
        assert!(log.writes().iter().all(|w| !w.starts_with("UPDATE")), "{:?}", log.writes());
        let row: Book = books::table.first(&mut db.conn)?;
        assert_eq!(row.author_id, uow.get(&old)?.id);
        Ok(())
    }
}
