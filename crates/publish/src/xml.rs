//! A small XML writer over quick-xml: elements with text are escaped by quick-xml, so
//! client-supplied text (an email address) can never add markup.

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

/// An XML document being written, indented by two spaces.
pub(crate) struct Doc(Writer<Vec<u8>>);

impl Doc {
    /// A document starting with the XML declaration (UTF-8).
    pub(crate) fn new() -> Doc {
        let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None))).expect("writing to a Vec");
        Doc(w)
    }

    /// Writes an event (into memory: cannot fail).
    pub(crate) fn event(&mut self, e: Event<'_>) {
        self.0.write_event(e).expect("writing to a Vec");
    }

    /// Opens `name` with `attrs`.
    pub(crate) fn open(&mut self, name: &str, attrs: &[(&str, &str)]) {
        let mut start = BytesStart::new(name);
        for a in attrs {
            start.push_attribute(*a);
        }
        self.event(Event::Start(start));
    }

    /// Closes `name`.
    pub(crate) fn close(&mut self, name: &str) {
        self.event(Event::End(BytesEnd::new(name)));
    }

    /// `<name>text</name>`, `text` escaped.
    pub(crate) fn leaf(&mut self, name: &str, text: &str) {
        self.open(name, &[]);
        self.event(Event::Text(BytesText::new(text)));
        self.close(name);
    }

    /// `<name/>`.
    pub(crate) fn empty(&mut self, name: &str) {
        self.event(Event::Empty(BytesStart::new(name)));
    }

    /// The document as text, ending with a newline.
    pub(crate) fn finish(self) -> String {
        let mut s = String::from_utf8(self.0.into_inner()).expect("quick-xml writes UTF-8 from &str");
        s.push('\n');
        s
    }
}
