//! Properties of `derive`'s output, checked on the syntax tree rather than on its text, so
//! that they survive changes in layout and naming.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::visit::Visit;
use syn::{parse_quote, DeriveInput, File, Item, ItemImpl};

use super::derive;

fn expand(input: DeriveInput) -> File {
    let output = derive(&input);
    match syn::parse2(output.clone()) {
        Ok(file) => file,
        Err(e) => panic!("the expansion is not valid Rust ({e}):\n{output}"),
    }
}

/// The messages of the `compile_error!`s, failing unless the only other item is the fallback
/// (`const _` with an `impl Entity`, so that call sites stay quiet).
fn errors(input: DeriveInput) -> Vec<String> {
    let mut messages = Vec::new();
    let mut fallbacks = 0;
    for item in expand(input).items {
        match item {
            Item::Macro(m)
                if m.mac
                    .path
                    .segments
                    .last()
                    .is_some_and(|s| s.ident == "compile_error") =>
            {
                match syn::parse2::<syn::LitStr>(m.mac.tokens) {
                    Ok(message) => messages.push(message.value()),
                    Err(e) => panic!("compile_error! without a message: {e}"),
                }
            }
            Item::Const(fallback) if text(&fallback).contains("::Entityfor") => fallbacks += 1,
            other => panic!(
                "an error expansion emitted more than errors and the fallback: {}",
                other.to_token_stream()
            ),
        }
    }
    assert_eq!(fallbacks, 1, "one fallback impl block beside the errors");
    messages
}

/// The items inside `const _: () = { ... };`, failing unless that is all the expansion is.
fn const_block(input: DeriveInput) -> Vec<Item> {
    let file = expand(input);
    let [Item::Const(item)] = file.items.as_slice() else {
        panic!(
            "expected one `const _` item, got {}",
            file.to_token_stream()
        );
    };
    assert_eq!(item.ident, "_", "the const is anonymous");
    assert_eq!(item.ty.to_token_stream().to_string(), "()");
    let syn::Expr::Block(block) = &*item.expr else {
        panic!("the const's value is not a block");
    };
    block
        .block
        .stmts
        .iter()
        .filter_map(|stmt| match stmt {
            syn::Stmt::Item(item) => Some(item.clone()),
            _ => None,
        })
        .collect()
}

/// The items of a `const _: () = { ... };` item, or `None` for another item.
fn const_items(item: &Item) -> Option<Vec<Item>> {
    let Item::Const(item) = item else {
        return None;
    };
    let syn::Expr::Block(block) = &*item.expr else {
        return None;
    };
    Some(
        block
            .block
            .stmts
            .iter()
            .filter_map(|stmt| match stmt {
                syn::Stmt::Item(item) => Some(item.clone()),
                _ => None,
            })
            .collect(),
    )
}

/// The items of the block that names the table and the columns (`expand/names.rs`): the one
/// nested `const _` implementing `__UowColumns`.
fn schema_block(items: &[Item]) -> Vec<Item> {
    let mut found = items.iter().filter_map(const_items).filter(|inner| {
        inner.iter().any(|item| {
            matches!(item, Item::Impl(i) if i.trait_.as_ref().is_some_and(|(_, p, _)| text(p) == "__UowColumns"))
        })
    });
    let block = found.next().expect("a block implementing `__UowColumns`");
    assert!(found.next().is_none(), "one block names the table");
    block
}

/// The impl of the trait whose path ends in `name`.
fn impl_of<'a>(items: &'a [Item], name: &str) -> &'a ItemImpl {
    let found = items.iter().find_map(|item| match item {
        Item::Impl(i)
            if i.trait_
                .as_ref()
                .and_then(|(_, p, _)| p.segments.last())
                .is_some_and(|s| s.ident == name) =>
        {
            Some(i)
        }
        _ => None,
    });
    match found {
        Some(i) => i,
        None => panic!("no impl of {name}"),
    }
}

fn text(tokens: impl ToTokens) -> String {
    tokens.to_token_stream().to_string().replace(' ', "")
}

#[derive(Default)]
struct Collect {
    /// Every path written with a leading `::`, as text.
    absolute: Vec<String>,
    /// Every path, as text.
    all: Vec<String>,
    lifetimes: Vec<String>,
}

impl<'ast> Visit<'ast> for Collect {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        let written = text(path);
        if path.leading_colon.is_some() {
            self.absolute.push(written.clone());
        }
        self.all.push(written);
        syn::visit::visit_path(self, path);
    }

    fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
        self.lifetimes.push(lifetime.ident.to_string());
    }
}

fn collect(items: &[Item]) -> Collect {
    let mut collect = Collect::default();
    for item in items {
        collect.visit_item(item);
    }
    collect
}

fn account() -> DeriveInput {
    parse_quote! {
        #[tracked(table = accounts, belongs_to(Owner, foreign_key = owner_id))]
        struct Account {
            #[tracked(generated)]
            id: i32,
            owner_id: i32,
            balance: i64,
            #[tracked(version)]
            version: i32,
            #[tracked(skip)]
            cache: Vec<u8>,
        }
    }
}

#[test]
fn every_mistake_is_reported_at_once_with_help() {
    let messages = errors(parse_quote! {
        #[tracked(belongs_to(Owner, foreign_key = owner))]
        struct Account {
            #[tracked(skip)]
            id: i32,
            #[tracked(rename = owner)]
            owner_name: String,
            #[tracked(version)]
            v1: i32,
            #[tracked(version)]
            v2: i32,
        }
    });
    let expected = [
        "unknown `tracked` attribute `rename`",
        "names no table",
        "key field `id` cannot be skipped",
        "foreign key `owner` is not a field",
        "a second version field, `v2`",
    ];
    for fragment in expected {
        assert!(
            messages.iter().any(|m| m.contains(fragment)),
            "no error contains {fragment:?}: {messages:#?}"
        );
    }
    assert_eq!(messages.len(), expected.len(), "{messages:#?}");
    for message in &messages {
        assert!(message.contains("= help: "), "no help line: {message}");
    }
}

#[test]
fn shapes_that_are_not_entities_get_one_error_and_the_fallback() {
    let cases: [(DeriveInput, &str); 3] = [
        (
            parse_quote!(
                enum State {
                    A,
                    B,
                }
            ),
            "not enums",
        ),
        (
            parse_quote!(
                struct Pair(i32, i32);
            ),
            "needs named fields",
        ),
        (
            parse_quote!(
                struct Unit;
            ),
            "unit struct",
        ),
    ];
    for (input, fragment) in cases {
        let messages = errors(input);
        assert_eq!(messages.len(), 1, "{messages:#?}");
        assert!(messages[0].contains(fragment), "{messages:#?}");
    }
}

#[test]
fn the_expansion_is_one_anonymous_const_with_every_impl() {
    let items = const_block(account());
    for name in ["Entity", "Persist", "Load", "Relation"] {
        let imp = impl_of(&items, name);
        if name != "Relation" {
            assert_eq!(text(&imp.self_ty), "Account");
        }
    }
    let structs: Vec<String> = items
        .iter()
        .filter_map(|item| match item {
            Item::Struct(s) => Some(s.ident.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        structs,
        ["__UowSchema", "__UowRelation0"],
        "the schema type, then one relation type per `belongs_to`"
    );
}

#[test]
fn the_runtime_is_named_only_through_private_paths() {
    let items = const_block(account());
    let private = |items: &[Item]| -> Vec<String> {
        items
            .iter()
            .filter_map(|item| match item {
                Item::Use(u) => Some(text(u)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(private(&items), ["use::uow::__privateas__uow;"]);
    let found = collect(&items);
    assert!(!found.absolute.is_empty());
    for path in &found.absolute {
        assert!(
            path.starts_with("::uow::__private") || path.starts_with("::std::"),
            "generated code names `{path}`"
        );
    }
    let runtime = found.all.iter().filter(|p| p.starts_with("__uow::"));
    assert!(runtime.count() > 10, "the runtime is named through `__uow`");

    let mut renamed = account();
    renamed
        .attrs
        .push(parse_quote!(#[tracked(crate = my::reexport)]));
    let items = const_block(renamed);
    assert_eq!(private(&items), ["usemy::reexport::__privateas__uow;"]);
    for path in &collect(&items).absolute {
        assert!(path.starts_with("::std::"), "generated code names `{path}`");
    }
}

#[test]
fn type_parameters_are_kept_and_lifetimes_refused() {
    let items = const_block(parse_quote! {
        #[tracked(table = labels)]
        struct Label<T: Clone> where T: PartialEq {
            #[tracked(primary_key)]
            code: String,
            extra: T,
        }
    });
    let entity = impl_of(&items, "Entity");
    assert_eq!(text(&entity.self_ty), "Label<T>");
    let params: Vec<String> = entity.generics.params.iter().map(text).collect();
    assert_eq!(params, ["T:Clone"]);
    let predicates: Vec<String> = entity
        .generics
        .where_clause
        .iter()
        .flat_map(|w| w.predicates.iter().map(text))
        .collect();
    for wanted in ["T:PartialEq", "T:'static"] {
        assert!(
            predicates.iter().any(|p| p == wanted),
            "no `{wanted}` in {predicates:#?}"
        );
    }
    assert!(
        !predicates.iter().any(|p| p.starts_with("String:")),
        "a bound on a field without parameters is checked at the derive, not at each use: {predicates:#?}"
    );
    let persist = impl_of(&items, "Persist");
    let params: Vec<String> = persist.generics.params.iter().map(text).collect();
    assert_eq!(params, ["T:Clone", "__DB"]);

    let messages = errors(parse_quote! {
        #[tracked(table = labels)]
        struct Label<'a> {
            #[tracked(primary_key)]
            code: &'a str,
        }
    });
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(messages[0].contains("borrows data"), "{messages:#?}");
    assert!(messages[1].contains("is a reference"), "{messages:#?}");
}

#[test]
fn table_and_table_module_name_the_same_table() {
    let schema = |table: TokenStream| {
        let items = const_block(parse_quote! {
            #[tracked(table = #table)]
            struct Note { id: i32 }
        });
        let block = schema_block(&items);
        let uses: Vec<String> = block
            .iter()
            .filter_map(|item| match item {
                Item::Use(u) => Some(text(u)),
                _ => None,
            })
            .collect();
        let table = impl_of(&block, "__UowColumns")
            .items
            .iter()
            .find_map(|item| match item {
                syn::ImplItem::Type(t) if t.ident == "Table" => Some(text(&t.ty)),
                _ => None,
            });
        (uses, table)
    };
    for table in [quote!(schema::notes), quote!(schema::notes::table)] {
        let (uses, table) = schema(table);
        assert_eq!(uses, ["useschema::notes;"]);
        assert_eq!(table.as_deref(), Some("notes::table"));
    }
}

#[test]
fn the_users_names_are_resolved_in_one_block_with_hints_beside() {
    let items = const_block(parse_quote! {
        #[tracked(table = crate::schema::accounts)]
        struct Account {
            id: i32,
            #[tracked(column = owner)]
            holder: String,
            #[tracked(skip)]
            cache: Vec<u8>,
        }
    });

    // Only the schema block names the table and its columns; the impls name them through
    // `__UowColumns`.
    let schema = schema_block(&items);
    let columns = text(impl_of(&schema, "__UowColumns"));
    for wanted in [
        "typeTable=accounts::table;",
        "constTABLE:Self::Table=Self::Table{};",
        "typeColumn0=accounts::id;",
        "typeColumn1=accounts::owner;",
    ] {
        assert!(columns.contains(wanted), "no `{wanted}` in {columns}");
    }
    for name in ["Entity", "Persist", "Load"] {
        let imp = text(impl_of(&items, name));
        assert!(!imp.contains("accounts::"), "{name} names the table: {imp}");
    }
    let entity = text(impl_of(&items, "Entity"));
    assert!(
        entity.contains("typeTable=<__UowSchemaas__UowColumns>::Table;"),
        "{entity}"
    );
    assert!(
        entity.contains("column:<<__UowSchemaas__UowColumns>::Column1as__uow::Column>::NAME"),
        "{entity}"
    );

    // The hints: fallbacks named `table` and after each column (not after skipped fields),
    // shadowed by the table module's glob import, and a message per persisted field.
    let hints: Vec<Item> = schema.iter().filter_map(const_items).flatten().collect();
    let fallbacks: Vec<String> = hints
        .iter()
        .filter_map(|item| match item {
            Item::Struct(s) => Some(s.ident.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(fallbacks, ["table", "id", "owner"]);
    let hints = text(quote!(#(#hints)*));
    for wanted in [
        "message=\"`table = crate::schema::accounts` does not name a Diesel `table!` in scope\"",
        "message=\"field `id` is not a column of `crate::schema::accounts`\"",
        "message=\"`column = owner` is not a column of `crate::schema::accounts`\"",
        "useaccounts::*;",
        "<table<>as__UowTableFound>::__uow_found();",
        "<owneras__UowColumnFound1<<__UowSchemaas__UowColumns>::Table>>::__uow_found();",
    ] {
        let wanted = wanted.replace(' ', "");
        assert!(hints.contains(&wanted), "no `{wanted}` in {hints}");
    }
    assert!(
        !hints.contains("cache"),
        "a skipped field has no column: {hints}"
    );
}

#[test]
fn the_crate_hint_is_checked_before_the_first_runtime_trait() {
    let mut input = account();
    input
        .attrs
        .push(parse_quote!(#[tracked(crate = my::reexport)]));
    let items = const_block(input);
    let position =
        |wanted: &dyn Fn(&str) -> bool| items.iter().position(|item| wanted(&text(item)));
    let hint = position(&|item| item.contains("impl__UowCrateCheckforFallbackTable<>{}"));
    let hint = hint.expect("the crate hint");
    let first_runtime = position(&|item| {
        !item.starts_with("use") && !item.contains("__UowCrateCheck") && item.contains("__uow::")
    });
    assert!(
        first_runtime.is_some_and(|first| hint < first),
        "rustc stops at the first unresolved `__uow::` trait: the hint must come before it"
    );
    let hint = text(&items[hint]);
    for wanted in [
        "message=\"`crate = my::reexport` is not the path of the `uow` crate\"",
        "structFallbackTable{",
        "use__uow::*;",
    ] {
        let wanted = wanted.replace(' ', "");
        assert!(hint.contains(&wanted), "no `{wanted}` in {hint}");
    }
}

#[test]
fn a_children_field_is_no_column_and_is_visited_with_its_element_type() {
    let items = const_block(parse_quote! {
        #[tracked(table = products, belongs_to(Warehouse, foreign_key = warehouse_id))]
        struct Product {
            id: i32,
            warehouse_id: i32,
            #[tracked(children)]
            batches: Vec<Batch>,
        }
    });
    let entity = text(impl_of(&items, "Entity"));
    assert!(
        !entity.contains("\"batches\",column"),
        "not in FIELDS: {entity}"
    );
    assert!(entity.contains("constHAS_CHILDREN:bool=true"), "{entity}");
    // The element is named as a child of the struct, so that one that is not is one error.
    let element = "<Batchas__uow::IsChildOf<Self>>::Child";
    assert!(
        entity.contains(&format!("visit::<{element}>(0usize,&self.batches)")),
        "{entity}"
    );
    let persist = text(impl_of(&items, "Persist"));
    assert!(
        persist.contains(&format!("visit::<{element}>()")),
        "{persist}"
    );
    let load = text(impl_of(&items, "Load"));
    assert!(
        load.contains("Batch:__uow::Load<__DB>"),
        "loading the root loads the tree: {load}"
    );
    // `belongs_to` gives the struct `ChildOf` its parent.
    let child_of = text(impl_of(&items, "ChildOf"));
    assert!(
        child_of.contains("ChildOf<Warehouse>forProduct"),
        "{child_of}"
    );
}

#[test]
fn a_children_field_that_is_not_a_vec_or_has_a_column_is_refused() {
    let messages = errors(parse_quote! {
        #[tracked(table = products)]
        struct Product {
            id: i32,
            #[tracked(children)]
            batch: Option<Batch>,
            #[tracked(children, version)]
            batches: Vec<Batch>,
        }
    });
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].contains("must be a `Vec`"), "{messages:?}");
    assert!(messages[1].contains("cannot be `version`"), "{messages:?}");
}
