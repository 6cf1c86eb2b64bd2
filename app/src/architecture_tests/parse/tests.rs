//! The tokenizer and path reader on the cases the layer check relies on.

use super::*;

fn refs(src: &str, depth: usize) -> Vec<(usize, String)> {
    names(src, depth, &[])
        .crate_refs
        .into_iter()
        .map(|r| (r.line, r.name))
        .collect()
}

fn pairs(list: &[(usize, &str)]) -> Vec<(usize, String)> {
    list.iter().map(|(l, n)| (*l, n.to_string())).collect()
}

#[test]
fn nested_use_groups_name_each_top_module_once_per_item() {
    let src = "use crate::{\n    error::ApiError,\n    goods::{self, model::{A, B}},\n    \
               platform::{db::Db, redis::Redis},\n    self,\n};\n";
    assert_eq!(
        refs(src, 2),
        pairs(&[(2, "error"), (3, "goods"), (4, "platform")])
    );
}

#[test]
fn inline_paths_and_macro_crate_count() {
    let src = "fn f() { crate::orders::clear(); let x = <crate::cart::Cart as T>::new(); }\n\
               macro_rules! m { () => { $crate::platform::ids::Id }; }";
    assert_eq!(
        refs(src, 1),
        pairs(&[(1, "orders"), (1, "cart"), (2, "platform")])
    );
}

#[test]
fn comments_strings_and_chars_are_not_code() {
    let src = "// crate::orders::x\n/* crate::cart /* nested */ crate::wallet */\n\
               /// [`crate::users`]\nlet s = \"crate::goods::x\"; let r = r#\"crate::auth\"#;\n\
               let c = '\"'; let q = '\\''; fn f<'a>(x: &'a str) {}\nuse crate::queue::Pass;";
    assert_eq!(refs(src, 1), pairs(&[(6, "queue")]));
}

#[test]
fn super_counts_only_when_it_climbs_to_the_crate_root() {
    let src = "use super::store;\nuse super::super::goods::Goods;\nuse super::super::{cart, \
               wallet::W};\npub(super) fn f() {}";
    assert_eq!(
        refs(src, 2),
        pairs(&[(2, "goods"), (3, "cart"), (3, "wallet")])
    );
    // in a top-level file (depth 1) one `super` is the root
    assert_eq!(refs("use super::http::x;", 1), pairs(&[(1, "http")]));
}

#[test]
fn inline_mod_blocks_go_one_level_deeper() {
    let src = "mod tests {\n    use super::super::orders::X;\n    use super::Y;\n}\n\
               use super::super::cart::Z;";
    // orders/handlers.rs: depth 2; inside `mod tests` it takes three supers to reach the root
    assert_eq!(refs(src, 2), pairs(&[(5, "cart")]));
    assert_eq!(refs(src, 1), pairs(&[(2, "orders")]));
}

#[test]
fn path_mods_and_extern_crates() {
    let src = "#[cfg(test)]\n#[path = \"breaker_tests.rs\"]\nmod tests;\nuse kube::Api;\n\
               fn f() { ::redis::cmd(\"GET\"); my::kube::x(); tokio::spawn(a); }";
    let n = names(src, 2, &["kube", "redis", "tokio"]);
    assert_eq!(
        n.path_mods,
        vec![PathMod {
            file: "breaker_tests.rs".into(),
            depth: 3
        }]
    );
    let ext: Vec<_> = n
        .extern_refs
        .iter()
        .map(|r| (r.line, r.name.as_str()))
        .collect();
    assert_eq!(ext, vec![(4, "kube"), (5, "redis"), (5, "tokio")]);
}

#[test]
fn pub_crate_and_paths_through_other_roots_are_ignored() {
    let src = "pub(crate) fn f() {}\nuse floodgate_crds::crate_x;\nlet v = self::orders::x;";
    assert!(refs(src, 1).is_empty());
}
