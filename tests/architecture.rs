//! ARCHITECTURE.md stays true to the code: its module table lists, for every module of
//! `uow-core`, exactly the modules it imports, and no two modules import each other through a
//! cycle (a module uses only modules below it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every module of `uow-core/src` (a file, or a directory with its files) and the crate
/// modules its code names as `crate::module`, comments left out.
fn imports(src: &Path) -> Graph {
    let mut graph = Graph::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap_or(&path);
            let first = relative
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().into_owned());
            let Some(module) = first.map(|f| f.trim_end_matches(".rs").to_string()) else {
                continue;
            };
            // The crate root declares modules; plan's unit tests use the planner only.
            if module == "lib" || relative.ends_with("plan/tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let used = graph.entry(module.clone()).or_default();
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (at, _) in line.match_indices("crate::") {
                    let name: String = line[at + "crate::".len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != module {
                        used.insert(name);
                    }
                }
            }
        }
    }
    graph
}

/// The module table of ARCHITECTURE.md: `| \`module\` | \`a\`, \`b\` | job |`.
fn documented(text: &str) -> Graph {
    let start = text
        .find("| module | uses | job |")
        .expect("ARCHITECTURE.md has a module table");
    let mut graph = Graph::new();
    for line in text[start..].lines().skip(2) {
        if !line.starts_with("| `") {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let module = cells[1].trim_matches('`').to_string();
        let uses = cells[2]
            .split(',')
            .map(|u| u.trim().trim_matches('`').to_string())
            .filter(|u| !u.is_empty() && u != "nothing")
            .collect();
        graph.insert(module, uses);
    }
    graph
}

#[test]
fn the_module_table_lists_exactly_what_each_module_imports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let actual = imports(&root.join("uow-core/src"));
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let table = documented(&text);
    let mut wrong = Vec::new();
    for (module, uses) in &actual {
        match table.get(module) {
            None => wrong.push(format!("`{module}` is not in the table")),
            Some(listed) if listed != uses => wrong.push(format!(
                "`{module}` uses {uses:?}, the table says {listed:?}"
            )),
            Some(_) => {}
        }
    }
    for module in table.keys().filter(|m| !actual.contains_key(*m)) {
        wrong.push(format!(
            "the table lists `{module}`, which is not a module of uow-core"
        ));
    }
    assert!(
        wrong.is_empty(),
        "ARCHITECTURE.md's module table is out of date:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_modules_import_each_other_through_a_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = imports(&root.join("uow-core/src"));
    // Depth-first search; a module met again while still on the path closes a cycle.
    fn visit<'g>(
        module: &'g str,
        graph: &'g Graph,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| *m == module) {
            let mut cycle: Vec<String> = path[at..].iter().map(|m| m.to_string()).collect();
            cycle.push(module.to_string());
            return Some(cycle);
        }
        if !done.insert(module) {
            return None;
        }
        path.push(module);
        for next in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        let cycle = visit(module, &graph, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "modules import each other in a cycle: {}",
            cycle.unwrap_or_default().join(" -> ")
        );
    }
}
