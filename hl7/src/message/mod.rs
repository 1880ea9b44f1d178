//! An HL7 v2 message: segments of fields, each field a list of repetitions of components of
//! sub-components (HL7 v2.6 chapter 2, 2.5 "Message construction rules").
//!
//! Values in the model are plain text: [`Message::parse`] unescapes what it reads and
//! [`Message::encode`] escapes every value it writes, so no caller ever concatenates
//! delimiters with input. Field numbers are 1-based as in HL7; in MSH, field 1 is the field
//! separator itself and field 2 the encoding characters, so `MSH-9` is `field(9)` here too.

mod dtm;
mod error;
mod escape;
mod parse;
#[cfg(test)]
mod tests;

pub use dtm::{format_dtm, parse_dtm};
pub use error::{ErrorCode, Location, ParseError};
pub use escape::{escape, unescape};
pub use parse::Limits;

/// The five delimiters: the field separator is MSH-1, the others MSH-2 in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    /// `|`
    pub field: char,
    /// `^`
    pub component: char,
    /// `~`
    pub repetition: char,
    /// `\`
    pub escape: char,
    /// `&`
    pub subcomponent: char,
}

impl Default for Delimiters {
    /// HL7's recommended `|^~\&`, which IHE PCD TF-2 B.1 (MSH-1, MSH-2) requires.
    fn default() -> Self {
        Self { field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&' }
    }
}

impl Delimiters {
    /// MSH-2: component, repetition, escape, sub-component.
    pub fn encoding_characters(&self) -> String {
        [self.component, self.repetition, self.escape, self.subcomponent].iter().collect()
    }
}

/// A component: one or more sub-components (most have exactly one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Component(pub Vec<String>);

/// One repetition of a field: its components.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Repetition(pub Vec<Component>);

/// A field: its repetitions (an empty field has none).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Field(pub Vec<Repetition>);

impl Component {
    /// A component of one value.
    pub fn text(value: impl Into<String>) -> Self {
        Self(vec![value.into()])
    }

    /// A component of sub-components (`a&b&c`).
    pub fn subs<S: Into<String>>(values: impl IntoIterator<Item = S>) -> Self {
        Self(values.into_iter().map(Into::into).collect())
    }

    /// Sub-component `n` (1-based).
    pub fn sub(&self, n: usize) -> Option<&str> {
        self.0.get(n.checked_sub(1)?).map(String::as_str)
    }
}

impl Repetition {
    /// Component `n` (1-based), its first sub-component.
    pub fn component(&self, n: usize) -> Option<&str> {
        self.0.get(n.checked_sub(1)?)?.sub(1)
    }
}

impl Field {
    /// A field of one value.
    pub fn text(value: impl Into<String>) -> Self {
        Self(vec![Repetition(vec![Component::text(value)])])
    }

    /// A field of components (`a^b^c`); trailing empty components are dropped when encoding.
    pub fn components<S: Into<String>>(values: impl IntoIterator<Item = S>) -> Self {
        Self(vec![Repetition(values.into_iter().map(Component::text).collect())])
    }

    /// A field of components that may have sub-components.
    pub fn composite(components: Vec<Component>) -> Self {
        Self(vec![Repetition(components)])
    }

    /// A repeated field of single values (`a~b~c`).
    pub fn repeated<S: Into<String>>(values: impl IntoIterator<Item = S>) -> Self {
        Self(values.into_iter().map(|v| Repetition(vec![Component::text(v)])).collect())
    }

    /// The repetitions.
    pub fn repetitions(&self) -> &[Repetition] {
        &self.0
    }

    /// Component `n` (1-based) of the first repetition, its first sub-component.
    pub fn component(&self, n: usize) -> Option<&str> {
        self.0.first()?.component(n)
    }

    /// The whole field's first value (component 1); `None` when empty.
    pub fn value(&self) -> Option<&str> {
        self.component(1).filter(|v| !v.is_empty())
    }

    /// Whether nothing is in it.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|r| r.0.iter().all(|c| c.0.iter().all(String::is_empty)))
    }
}

/// A segment: its id (`MSH`, `OBX`, …) and fields 1..n.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    name: String,
    fields: Vec<Field>,
}

impl Segment {
    /// An empty segment. The id is not checked here: the encoder writes what it is given, and
    /// our own builders only use literal ids.
    pub fn new(name: &str) -> Self {
        Self { name: name.to_owned(), fields: Vec::new() }
    }

    /// Sets field `n` (1-based), growing the segment with empty fields as needed.
    pub fn set(&mut self, n: usize, field: Field) -> &mut Self {
        if n == 0 {
            return self;
        }
        if self.fields.len() < n {
            self.fields.resize(n, Field::default());
        }
        self.fields[n - 1] = field;
        self
    }

    /// [`Segment::set`], by value, for building a segment in one expression.
    pub fn with(mut self, n: usize, field: Field) -> Self {
        self.set(n, field);
        self
    }

    /// [`Segment::with`] a single text value.
    pub fn with_text(self, n: usize, value: impl Into<String>) -> Self {
        self.with(n, Field::text(value))
    }

    /// The segment id.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Field `n` (1-based).
    pub fn field(&self, n: usize) -> Option<&Field> {
        self.fields.get(n.checked_sub(1)?)
    }

    /// The number of fields (the last one's position).
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether it has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Field `field`, component `component` (1-based), first repetition and sub-component;
    /// `None` when absent or empty.
    pub fn get(&self, field: usize, component: usize) -> Option<&str> {
        self.field(field)?.component(component).filter(|v| !v.is_empty())
    }
}

/// A message: its delimiters and segments, MSH first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    delimiters: Delimiters,
    segments: Vec<Segment>,
}

impl Default for Message {
    fn default() -> Self {
        Self::new()
    }
}

impl Message {
    /// An empty message with the standard delimiters.
    pub fn new() -> Self {
        Self { delimiters: Delimiters::default(), segments: Vec::new() }
    }

    /// Reads a message (see [`Limits`] for the bounds and what is tolerated).
    pub fn parse(text: &str, limits: &Limits) -> Result<Self, ParseError> {
        parse::parse(text, limits)
    }

    /// [`Message::parse`] of bytes, which must be UTF-8 (ASCII included); IHE PCD messages are
    /// ASCII or UTF-8 (MSH-18).
    pub fn parse_bytes(bytes: &[u8], limits: &Limits) -> Result<Self, ParseError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            ParseError::new(
                ErrorCode::DataType,
                Location::default(),
                format!("not UTF-8 (invalid byte at offset {})", e.valid_up_to()),
            )
        })?;
        parse::parse(text, limits)
    }

    /// The delimiters.
    pub fn delimiters(&self) -> &Delimiters {
        &self.delimiters
    }

    /// Appends a segment. An MSH gets its fields 1 and 2 from the message's delimiters.
    pub fn push(&mut self, mut segment: Segment) -> &mut Self {
        if segment.name == "MSH" {
            segment.set(1, Field::text(self.delimiters.field));
            segment.set(2, Field::text(self.delimiters.encoding_characters()));
        }
        self.segments.push(segment);
        self
    }

    /// [`Message::push`], by value.
    pub fn with(mut self, segment: Segment) -> Self {
        self.push(segment);
        self
    }

    /// The segments in order.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    /// The segments with id `name`, in order.
    pub fn segments_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Segment> + 'a {
        self.segments.iter().filter(move |s| s.name == name)
    }

    /// The `index`-th (0-based) segment with id `name`.
    pub fn segment(&self, name: &str, index: usize) -> Option<&Segment> {
        self.segments.iter().filter(|s| s.name == name).nth(index)
    }

    /// Whether a segment with id `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.segments.iter().any(|s| s.name == name)
    }

    /// `msg.get("OBX", 0, 18, 1)`: the first OBX's field 18, component 1 (first repetition,
    /// first sub-component), unescaped; `None` when absent or empty. MSH-1 and MSH-2 are the
    /// delimiters themselves.
    pub fn get(&self, name: &str, index: usize, field: usize, component: usize) -> Option<&str> {
        self.segment(name, index)?.get(field, component)
    }

    /// Field `field` of the `index`-th segment `name`, whole (all repetitions).
    pub fn get_field(&self, name: &str, index: usize, field: usize) -> Option<&Field> {
        self.segment(name, index)?.field(field)
    }

    /// [`Message::get`], or a "required field missing" error at that place.
    pub fn require(&self, name: &str, index: usize, field: usize, component: usize) -> Result<&str, ParseError> {
        self.get(name, index, field, component).ok_or_else(|| {
            ParseError::missing(
                Location::component(name, index + 1, field, component),
                &format!("{name}-{field}.{component}"),
            )
            .with_control_id(self.control_id())
        })
    }

    /// MSH-9: message code, trigger event, message structure.
    pub fn message_type(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
        (self.get("MSH", 0, 9, 1), self.get("MSH", 0, 9, 2), self.get("MSH", 0, 9, 3))
    }

    /// MSH-10.
    pub fn control_id(&self) -> Option<&str> {
        self.get("MSH", 0, 10, 1)
    }

    /// The message as HL7 text: segments each ended by `\r`, every value escaped, trailing
    /// empty fields, components and sub-components omitted.
    pub fn encode(&self) -> String {
        let d = &self.delimiters;
        let mut out = String::new();
        for seg in &self.segments {
            out.push_str(&seg.name);
            let skip = if seg.name == "MSH" {
                out.push(d.field);
                out.push_str(&d.encoding_characters());
                2
            } else {
                0
            };
            let fields: Vec<String> = seg.fields.iter().skip(skip).map(|f| encode_field(f, d)).collect();
            let used = fields.iter().rposition(|f| !f.is_empty()).map_or(0, |i| i + 1);
            for f in &fields[..used] {
                out.push(d.field);
                out.push_str(f);
            }
            out.push('\r');
        }
        out
    }
}

fn encode_field(field: &Field, d: &Delimiters) -> String {
    let reps: Vec<String> = field
        .0
        .iter()
        .map(|rep| {
            let comps: Vec<String> = rep
                .0
                .iter()
                .map(|c| join_trimmed(c.0.iter().map(|s| escape(s, d)).collect(), d.subcomponent))
                .collect();
            join_trimmed(comps, d.component)
        })
        .collect();
    join_trimmed(reps, d.repetition)
}

/// `parts` joined by `sep`, without the empty ones at the end (HL7 2.5.3: trailing delimiters
/// may be omitted).
fn join_trimmed(parts: Vec<String>, sep: char) -> String {
    let used = parts.iter().rposition(|p| !p.is_empty()).map_or(0, |i| i + 1);
    let mut out = String::new();
    for (i, p) in parts[..used].iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        out.push_str(p);
    }
    out
}
