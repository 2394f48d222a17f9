//! The parsed page as the walk needs it: a flat arena of nodes (elements with
//! their tag and the few attributes the extractor reads, text, and
//! placeholders for everything else), built by html5ever's tree builder
//! through [`DomSink`].
//!
//! It replaces `scraper`'s `Html`, which keeps every attribute of every element
//! (sorted, in tendrils) and every comment's text: on large pages that tree was
//! a fifth of the parse. Nodes link by index, so building, walking and dropping
//! the tree are loops, never recursion. Tree depth is capped at [`MAX_DEPTH`]
//! as Chromium caps it: an element that would be deeper is appended to its
//! parent's parent instead, so the walk and the container choice stay cheap
//! on a page nested 100,000 deep.

use std::borrow::Cow;
use std::cell::{Ref, RefCell};

use html5ever::tendril::StrTendril;
use html5ever::tree_builder::{ElementFlags, NodeOrText, QuirksMode, TreeSink};
use html5ever::{Attribute, LocalName, QualName};

/// Chromium's `kMaximumHTMLParserDOMTreeDepth`: deeper elements become siblings.
pub(super) const MAX_DEPTH: u32 = 512;

/// No node (a missing parent, child or sibling).
const NONE: usize = usize::MAX;

/// Attributes the extractor reads (`blocks.rs`, `marks.rs`); others are not kept.
const KEPT_ATTRS: &[&str] = &[
    "class",
    "id",
    "style",
    "hidden",
    "aria-hidden",
    "itemprop",
    "lang",
    "property",
    "name",
    "content",
];

fn is_kept_attr(name: &LocalName) -> bool {
    KEPT_ATTRS.contains(&&**name)
}

/// [`is_kept_attr`] for a name as written in the page (any case).
pub(super) fn is_kept_attr_name(name: &[u8]) -> bool {
    KEPT_ATTRS.iter().any(|k| name.eq_ignore_ascii_case(k.as_bytes()))
}

/// An element: its name and the attributes of [`is_kept_attr`] (no namespace).
#[derive(Debug)]
pub(super) struct Element {
    name: QualName,
    attrs: Vec<(LocalName, StrTendril)>,
}

impl Element {
    fn new(name: QualName, attrs: Vec<Attribute>) -> Self {
        let attrs = attrs
            .into_iter()
            .filter(|a| a.name.ns.is_empty() && is_kept_attr(&a.name.local))
            .map(|a| (a.name.local, a.value))
            .collect();
        Element { name, attrs }
    }

    /// The local name (`div`).
    pub(super) fn name(&self) -> &str {
        &self.name.local
    }

    /// A kept attribute's value.
    pub(super) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| &**n == name).map(|(_, v)| &**v)
    }

    /// The kept attributes, as `(name, value)`.
    pub(super) fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().map(|(n, v)| (&**n, &**v))
    }
}

/// What a node is.
#[derive(Debug)]
pub(super) enum Node {
    Document,
    Element(Element),
    Text(StrTendril),
    /// A comment, doctype, processing instruction or template contents: no text.
    Other,
}

impl Node {
    pub(super) fn as_text(&self) -> Option<&str> {
        match self {
            Node::Text(t) => Some(t),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Slot {
    node: Node,
    parent: usize,
    first_child: usize,
    last_child: usize,
    prev: usize,
    next: usize,
    /// Depth when last attached (the document is 0; moved subtrees keep their
    /// children's old depths: it only has to bound depth roughly).
    depth: u32,
}

/// The parsed page.
#[derive(Debug)]
pub(super) struct Dom {
    slots: Vec<Slot>,
}

impl Dom {
    fn new() -> Self {
        let mut dom = Dom {
            slots: Vec::with_capacity(1024),
        };
        dom.add(Node::Document);
        dom
    }

    fn add(&mut self, node: Node) -> usize {
        self.slots.push(Slot {
            node,
            parent: NONE,
            first_child: NONE,
            last_child: NONE,
            prev: NONE,
            next: NONE,
            depth: 0,
        });
        self.slots.len() - 1
    }

    /// The document node.
    pub(super) fn root(&self) -> NodeRef<'_> {
        NodeRef { dom: self, id: 0 }
    }

    fn detach(&mut self, id: usize) {
        let Slot {
            parent, prev, next, ..
        } = self.slots[id];
        if parent == NONE {
            return;
        }
        if prev == NONE {
            self.slots[parent].first_child = next;
        } else {
            self.slots[prev].next = next;
        }
        if next == NONE {
            self.slots[parent].last_child = prev;
        } else {
            self.slots[next].prev = prev;
        }
        let s = &mut self.slots[id];
        (s.parent, s.prev, s.next) = (NONE, NONE, NONE);
    }

    /// Append a detached node as `parent`'s last child (or, past [`MAX_DEPTH`], its grandparent's).
    fn append_child(&mut self, mut parent: usize, id: usize) {
        if self.slots[parent].depth >= MAX_DEPTH && self.slots[parent].parent != NONE {
            parent = self.slots[parent].parent;
        }
        let last = self.slots[parent].last_child;
        let depth = self.slots[parent].depth + 1;
        let s = &mut self.slots[id];
        (s.parent, s.prev, s.next, s.depth) = (parent, last, NONE, depth);
        if last == NONE {
            self.slots[parent].first_child = id;
        } else {
            self.slots[last].next = id;
        }
        self.slots[parent].last_child = id;
    }

    /// Insert a detached node right before `sibling`, which has a parent.
    fn insert_before(&mut self, sibling: usize, id: usize) {
        let Slot {
            parent, prev, depth, ..
        } = self.slots[sibling];
        let s = &mut self.slots[id];
        (s.parent, s.prev, s.next, s.depth) = (parent, prev, sibling, depth);
        self.slots[sibling].prev = id;
        if prev == NONE {
            self.slots[parent].first_child = id;
        } else {
            self.slots[prev].next = id;
        }
    }

    /// Append text to `id` if it is a text node.
    fn extend_text(&mut self, id: usize, text: &StrTendril) -> bool {
        match self.slots.get_mut(id).map(|s| &mut s.node) {
            Some(Node::Text(t)) => {
                t.push_tendril(text);
                true
            }
            _ => false,
        }
    }
}

/// A node of a [`Dom`].
#[derive(Clone, Copy)]
pub(super) struct NodeRef<'a> {
    dom: &'a Dom,
    id: usize,
}

/// A step of [`NodeRef::traverse`]: entering or leaving a node.
pub(super) enum Edge<'a> {
    Open(NodeRef<'a>),
    Close(NodeRef<'a>),
}

impl<'a> NodeRef<'a> {
    pub(super) fn id(&self) -> usize {
        self.id
    }

    pub(super) fn value(&self) -> &'a Node {
        &self.dom.slots[self.id].node
    }

    /// The subtree in document order, each node opened and closed; iterative.
    pub(super) fn traverse(&self) -> Traverse<'a> {
        Traverse {
            dom: self.dom,
            root: self.id,
            next: Some(Edge::Open(*self)),
        }
    }

    /// The node and all nodes below it, in document order.
    pub(super) fn descendants(&self) -> impl Iterator<Item = NodeRef<'a>> {
        self.traverse().filter_map(|e| match e {
            Edge::Open(n) => Some(n),
            Edge::Close(_) => None,
        })
    }
}

/// See [`NodeRef::traverse`].
pub(super) struct Traverse<'a> {
    dom: &'a Dom,
    root: usize,
    next: Option<Edge<'a>>,
}

impl<'a> Iterator for Traverse<'a> {
    type Item = Edge<'a>;

    fn next(&mut self) -> Option<Edge<'a>> {
        let edge = self.next.take()?;
        let dom = self.dom;
        let at = |id| NodeRef { dom, id };
        self.next = match &edge {
            Edge::Open(n) => match dom.slots[n.id].first_child {
                NONE => Some(Edge::Close(*n)),
                c => Some(Edge::Open(at(c))),
            },
            Edge::Close(n) if n.id == self.root => None,
            Edge::Close(n) => match dom.slots[n.id].next {
                NONE => match dom.slots[n.id].parent {
                    NONE => None,
                    p => Some(Edge::Close(at(p))),
                },
                s => Some(Edge::Open(at(s))),
            },
        };
        Some(edge)
    }
}

/// Builds a [`Dom`] for html5ever's tree builder (the semantics of `scraper`'s
/// sink: adjacent text merges, template contents are a child of the template).
pub(super) struct DomSink(RefCell<Dom>);

impl DomSink {
    pub(super) fn new() -> Self {
        DomSink(RefCell::new(Dom::new()))
    }
}

impl TreeSink for DomSink {
    type Output = Dom;
    type Handle = usize;
    type ElemName<'a> = Ref<'a, QualName>;

    fn finish(self) -> Dom {
        self.0.into_inner()
    }

    fn parse_error(&self, _msg: Cow<'static, str>) {}

    fn get_document(&self) -> usize {
        0
    }

    fn elem_name<'a>(&'a self, target: &'a usize) -> Ref<'a, QualName> {
        Ref::map(self.0.borrow(), |dom| match &dom.slots[*target].node {
            Node::Element(e) => &e.name,
            _ => panic!("elem_name of a non-element"),
        })
    }

    fn create_element(&self, name: QualName, attrs: Vec<Attribute>, _flags: ElementFlags) -> usize {
        let template = name.ns == html5ever::ns!(html) && &*name.local == "template";
        let mut dom = self.0.borrow_mut();
        let id = dom.add(Node::Element(Element::new(name, attrs)));
        if template {
            let contents = dom.add(Node::Other);
            dom.append_child(id, contents);
        }
        id
    }

    fn create_comment(&self, _text: StrTendril) -> usize {
        self.0.borrow_mut().add(Node::Other)
    }

    fn create_pi(&self, _target: StrTendril, _data: StrTendril) -> usize {
        self.0.borrow_mut().add(Node::Other)
    }

    fn append(&self, parent: &usize, child: NodeOrText<usize>) {
        let mut dom = self.0.borrow_mut();
        match child {
            NodeOrText::AppendNode(id) => dom.append_child(*parent, id),
            NodeOrText::AppendText(text) => {
                let last = dom.slots[*parent].last_child;
                if !dom.extend_text(last, &text) {
                    let id = dom.add(Node::Text(text));
                    dom.append_child(*parent, id);
                }
            }
        }
    }

    fn append_based_on_parent_node(&self, element: &usize, prev_element: &usize, child: NodeOrText<usize>) {
        let has_parent = self.0.borrow().slots[*element].parent != NONE;
        if has_parent {
            self.append_before_sibling(element, child)
        } else {
            self.append(prev_element, child)
        }
    }

    fn append_doctype_to_document(&self, _name: StrTendril, _public_id: StrTendril, _system_id: StrTendril) {
        let mut dom = self.0.borrow_mut();
        let id = dom.add(Node::Other);
        dom.append_child(0, id);
    }

    fn get_template_contents(&self, target: &usize) -> usize {
        self.0.borrow().slots[*target].first_child
    }

    fn same_node(&self, x: &usize, y: &usize) -> bool {
        x == y
    }

    fn set_quirks_mode(&self, _mode: QuirksMode) {}

    fn append_before_sibling(&self, sibling: &usize, new_node: NodeOrText<usize>) {
        let mut dom = self.0.borrow_mut();
        if let NodeOrText::AppendNode(id) = new_node {
            dom.detach(id);
        }
        if dom.slots[*sibling].parent == NONE {
            return;
        }
        match new_node {
            NodeOrText::AppendNode(id) => dom.insert_before(*sibling, id),
            NodeOrText::AppendText(text) => {
                let prev = dom.slots[*sibling].prev;
                if !dom.extend_text(prev, &text) {
                    let id = dom.add(Node::Text(text));
                    dom.insert_before(*sibling, id);
                }
            }
        }
    }

    fn add_attrs_if_missing(&self, target: &usize, attrs: Vec<Attribute>) {
        let mut dom = self.0.borrow_mut();
        let Node::Element(el) = &mut dom.slots[*target].node else {
            return;
        };
        for a in attrs {
            if a.name.ns.is_empty()
                && is_kept_attr(&a.name.local)
                && !el.attrs.iter().any(|(n, _)| *n == a.name.local)
            {
                el.attrs.push((a.name.local, a.value));
            }
        }
    }

    fn remove_from_parent(&self, target: &usize) {
        self.0.borrow_mut().detach(*target);
    }

    fn reparent_children(&self, node: &usize, new_parent: &usize) {
        let mut dom = self.0.borrow_mut();
        let mut child = dom.slots[*node].first_child;
        while child != NONE {
            let next = dom.slots[child].next;
            dom.detach(child);
            dom.append_child(*new_parent, child);
            child = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use html5ever::tendril::TendrilSink;

    fn parse(html: &str) -> Dom {
        html5ever::driver::parse_document(DomSink::new(), Default::default()).one(html)
    }

    fn texts(dom: &Dom) -> String {
        dom.root()
            .descendants()
            .filter_map(|n| n.value().as_text())
            .collect::<Vec<_>>()
            .join("|")
    }

    #[test]
    fn builds_the_tree_html5ever_describes() {
        // Misnested formatting (the adoption agency moves nodes) and foster-parented table text.
        let dom = parse("<p>a<b>b<i>c</b>d</i>e</p><table>f<tr><td>g</td></tr></table>");
        assert_eq!(texts(&dom), "a|b|c|d|e|f|g");
        let names: Vec<&str> = dom
            .root()
            .descendants()
            .filter_map(|n| match n.value() {
                Node::Element(e) => Some(e.name()),
                _ => None,
            })
            .collect();
        assert_eq!(
            names,
            ["html", "head", "body", "p", "b", "i", "i", "table", "tbody", "tr", "td"]
        );
        let dom = parse(r#"<div class="x" data-big="y" style="display:none" id=z>t</div>"#);
        let div = dom
            .root()
            .descendants()
            .find_map(|n| match n.value() {
                Node::Element(e) if e.name() == "div" => Some(e),
                _ => None,
            })
            .unwrap();
        assert_eq!(div.attr("class"), Some("x"));
        assert_eq!(div.attr("data-big"), None);
        assert_eq!(div.attrs().count(), 3);
    }

    #[test]
    fn depth_is_capped() {
        let n = 2_000;
        let dom = parse(&format!("{}x{}", "<div>".repeat(n), "</div>".repeat(n)));
        assert!(dom.slots.iter().all(|s| s.depth <= MAX_DEPTH));
        assert_eq!(texts(&dom), "x");
        let divs = dom
            .root()
            .descendants()
            .filter(|n| matches!(n.value(), Node::Element(e) if e.name() == "div"))
            .count();
        assert_eq!(divs, n);
    }
}
