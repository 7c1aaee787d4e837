//! A strict walk over a parsed YAML document: every value knows its field path and line, so a
//! decoder can say exactly where the input is wrong, and unknown fields are refused.

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::error::Located;

/// Parses `text` into its documents (`---` separated); empty documents are skipped.
pub fn documents(text: &str) -> Result<Vec<MarkedYaml<'_>>, Located> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| Located {
        line: e.marker().line(),
        field: String::new(),
        message: format!("YAML syntax: {} (column {})", e.info(), e.marker().col() + 1),
    })?;
    Ok(docs.into_iter().filter(|d| !matches!(d.data, YamlData::Value(Scalar::Null))).collect())
}

/// A value at a known place in the document.
#[derive(Clone)]
pub struct Node<'a, 'y> {
    yaml: &'a MarkedYaml<'y>,
    path: String,
}

impl<'a, 'y> Node<'a, 'y> {
    /// The document's root.
    pub fn root(yaml: &'a MarkedYaml<'y>) -> Node<'a, 'y> {
        Node { yaml, path: String::new() }
    }

    /// The line the value starts on (1-based).
    pub fn line(&self) -> usize {
        self.yaml.span.start.line()
    }

    /// The value's field path (`spec.ingress[0].toPorts`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// An error about this value.
    pub fn error(&self, message: impl Into<String>) -> Located {
        Located { line: self.line(), field: self.path.clone(), message: message.into() }
    }

    /// Whether the value is YAML null (`~`, `null` or nothing).
    pub fn is_null(&self) -> bool {
        matches!(self.yaml.data, YamlData::Value(Scalar::Null))
    }

    fn kind(&self) -> &'static str {
        match &self.yaml.data {
            YamlData::Value(Scalar::Null) => "null",
            YamlData::Value(Scalar::Boolean(_)) => "a boolean",
            YamlData::Value(Scalar::Integer(_)) => "an integer",
            YamlData::Value(Scalar::FloatingPoint(_)) => "a number",
            YamlData::Value(Scalar::String(_)) | YamlData::Representation(..) => "a string",
            YamlData::Sequence(_) => "a list",
            YamlData::Mapping(_) => "a mapping",
            YamlData::Tagged(..) => "a tagged value",
            YamlData::Alias(_) | YamlData::BadValue => "an alias",
        }
    }

    fn expected(&self, what: &str) -> Located {
        self.error(format!("expected {what}, found {}", self.kind()))
    }

    /// The value as text; integers and booleans are refused (quote them).
    pub fn str(&self) -> Result<&'a str, Located> {
        match &self.yaml.data {
            YamlData::Value(Scalar::String(s)) => Ok(s.as_ref()),
            _ => Err(self.expected("a string")),
        }
    }

    /// The value as text, accepting an unquoted integer too (`port: 80` or `port: "80"`).
    pub fn str_or_int(&self) -> Result<String, Located> {
        match &self.yaml.data {
            YamlData::Value(Scalar::String(s)) => Ok(s.to_string()),
            YamlData::Value(Scalar::Integer(i)) => Ok(i.to_string()),
            _ => Err(self.expected("a string or an integer")),
        }
    }

    /// The value as an integer in `min..=max`.
    pub fn int(&self, min: i64, max: i64) -> Result<i64, Located> {
        match &self.yaml.data {
            YamlData::Value(Scalar::Integer(i)) if (min..=max).contains(i) => Ok(*i),
            YamlData::Value(Scalar::Integer(i)) => Err(self.error(format!("{i} is out of range {min}..={max}"))),
            _ => Err(self.expected("an integer")),
        }
    }

    /// The value as a boolean.
    pub fn bool(&self) -> Result<bool, Located> {
        match &self.yaml.data {
            YamlData::Value(Scalar::Boolean(b)) => Ok(*b),
            _ => Err(self.expected("a boolean")),
        }
    }

    /// The items of a list (null reads as an empty list), each with its indexed path.
    pub fn list(&self) -> Result<Vec<Node<'a, 'y>>, Located> {
        let items: &'a [MarkedYaml<'y>] = match &self.yaml.data {
            YamlData::Sequence(items) => items,
            YamlData::Value(Scalar::Null) => &[],
            _ => return Err(self.expected("a list")),
        };
        Ok(items.iter().enumerate().map(|(i, yaml)| Node { yaml, path: format!("{}[{i}]", self.path) }).collect())
    }

    /// The fields of a mapping (null reads as an empty mapping); keys must be strings.
    pub fn fields(&self) -> Result<Fields<'a, 'y>, Located> {
        let mut entries = Vec::new();
        match &self.yaml.data {
            YamlData::Mapping(map) => {
                for (key, value) in map.iter() {
                    let key_node = key;
                    let key = match &key.data {
                        YamlData::Value(Scalar::String(s)) => s.to_string(),
                        YamlData::Value(Scalar::Integer(i)) => i.to_string(),
                        YamlData::Value(Scalar::Boolean(b)) => b.to_string(),
                        _ => {
                            let at = Node { yaml: key, path: self.path.clone() };
                            return Err(at.expected("a field name"));
                        }
                    };
                    let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
                    entries.push(Field { key, path, key_line: key_node.span.start.line(), yaml: value, taken: false });
                }
            }
            YamlData::Value(Scalar::Null) => {}
            _ => return Err(self.expected("a mapping")),
        }
        Ok(Fields { entries, line: self.line(), path: self.path.clone() })
    }

    /// A mapping of string to string (labels, matchLabels).
    pub fn string_map(&self) -> Result<Vec<(String, String)>, Located> {
        let fields = self.fields()?;
        let mut out = Vec::new();
        for field in &fields.entries {
            let node = Node { yaml: field.yaml, path: field.path.clone() };
            let value = match &node.yaml.data {
                YamlData::Value(Scalar::String(s)) => s.to_string(),
                YamlData::Value(Scalar::Integer(i)) => i.to_string(),
                YamlData::Value(Scalar::Boolean(b)) => b.to_string(),
                YamlData::Value(Scalar::Null) => String::new(),
                _ => return Err(node.expected("a string")),
            };
            out.push((field.key.clone(), value));
        }
        Ok(out)
    }
}

struct Field<'a, 'y> {
    key: String,
    path: String,
    key_line: usize,
    yaml: &'a MarkedYaml<'y>,
    taken: bool,
}

/// The fields of one mapping; each is taken by name, and [`Fields::finish`] refuses the rest.
pub struct Fields<'a, 'y> {
    entries: Vec<Field<'a, 'y>>,
    line: usize,
    path: String,
}

impl<'a, 'y> Fields<'a, 'y> {
    /// The field `name`, if present (a null value counts as absent).
    pub fn get(&mut self, name: &str) -> Option<Node<'a, 'y>> {
        let field = self.entries.iter_mut().find(|f| f.key == name)?;
        field.taken = true;
        let node = Node { yaml: field.yaml, path: field.path.clone() };
        (!node.is_null()).then_some(node)
    }

    /// Whether the mapping has `name` (with any value, null included).
    pub fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|f| f.key == name)
    }

    /// An error about the mapping itself (a missing field, a bad combination).
    pub fn error(&self, field: &str, message: impl Into<String>) -> Located {
        let path = match (self.path.is_empty(), field.is_empty()) {
            (_, true) => self.path.clone(),
            (true, false) => field.to_string(),
            (false, false) => format!("{}.{field}", self.path),
        };
        let line = self.entries.iter().find(|f| f.key == field).map_or(self.line, |f| f.key_line);
        Located { line, field: path, message: message.into() }
    }

    /// The fields not taken, each as a note at its line (what the Kubernetes API server would
    /// prune from an object).
    pub fn leftovers(&self) -> Vec<Located> {
        self.entries
            .iter()
            .filter(|f| !f.taken)
            .map(|f| Located {
                line: f.key_line,
                field: f.path.clone(),
                message: "unknown field, which the Kubernetes API server prunes; ignored".into(),
            })
            .collect()
    }

    /// Refuses any field not taken, naming the ones `allowed` here.
    pub fn finish(self, allowed: &[&str]) -> Result<(), Located> {
        self.finish_ref(allowed)
    }

    /// [`finish`](Self::finish) for fields held by reference.
    pub fn finish_ref(&self, allowed: &[&str]) -> Result<(), Located> {
        match self.entries.iter().find(|f| !f.taken) {
            None => Ok(()),
            Some(f) => Err(Located {
                line: f.key_line,
                field: f.path.clone(),
                message: format!("unknown field; expected one of {}", allowed.join(", ")),
            }),
        }
    }
}
