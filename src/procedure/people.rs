//! The names of the people the bot serves, learned from Telegram (`getChatMember` at start,
//! then every message it sees), so messages name and mention people rather than numbers.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::domain::UserId;
use crate::messages::{esc, label};

/// The longest first name or username shown, in characters: a name is a label, not a message.
const NAME_MAX_CHARS: usize = 64;
use crate::storage::Person;

#[derive(Default)]
pub struct People {
    known: RwLock<HashMap<UserId, Person>>,
}

impl People {
    pub fn new(people: Vec<Person>) -> Self {
        People {
            known: RwLock::new(people.into_iter().map(|p| (p.id, p)).collect()),
        }
    }

    /// Remembers `person`; true when something changed (and so should be stored).
    pub fn learn(&self, person: Person) -> bool {
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        if known.get(&person.id) == Some(&person) {
            return false;
        }
        known.insert(person.id, person);
        true
    }

    pub fn get(&self, id: UserId) -> Option<Person> {
        self.known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// The person's name as plain text (for a CSV cell or the terminal): no bidi controls,
    /// kept short.
    pub fn plain_name(&self, id: UserId) -> String {
        match self.get(id) {
            Some(p) => match &p.username {
                Some(u) => format!(
                    "{} (@{})",
                    label(&p.first_name, NAME_MAX_CHARS),
                    label(u, NAME_MAX_CHARS)
                ),
                None => label(&p.first_name, NAME_MAX_CHARS),
            },
            None => format!("user {id}"),
        }
    }

    /// The person's name, escaped for HTML.
    pub fn name(&self, id: UserId) -> String {
        esc(&self.plain_name(id))
    }

    /// A mention that notifies the person.
    pub fn mention(&self, id: UserId) -> String {
        let name = self
            .get(id)
            .map(|p| esc(&label(&p.first_name, NAME_MAX_CHARS)))
            .unwrap_or_else(|| format!("user {id}"));
        format!("<a href=\"tg://user?id={id}\">{name}</a>")
    }

    /// Resolves `@username` (any case) among the people learned.
    pub fn by_username(&self, username: &str) -> Option<UserId> {
        let wanted = username.trim_start_matches('@').to_lowercase();
        let known = self.known.read().unwrap_or_else(|p| p.into_inner());
        known
            .values()
            .find(|p| {
                p.username.as_deref().map(str::to_lowercase).as_deref() == Some(wanted.as_str())
            })
            .map(|p| p.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_usernames_resolve_in_any_case() {
        let people = People::new(vec![Person {
            id: UserId(5),
            first_name: "Budi <b>".into(),
            username: Some("Budi_S".into()),
        }]);
        assert_eq!(people.by_username("@budi_s"), Some(UserId(5)));
        assert_eq!(people.by_username("@other"), None);
        assert_eq!(
            people.mention(UserId(5)),
            "<a href=\"tg://user?id=5\">Budi &lt;b&gt;</a>"
        );
        assert_eq!(people.name(UserId(6)), "user 6");
        // A right-to-left override cannot turn the rest of the line around, and a long name is
        // cut to a label.
        people.learn(Person {
            id: UserId(7),
            first_name: format!("Joko\u{202E}gnirut{}", "x".repeat(100)),
            username: None,
        });
        let name = people.name(UserId(7));
        assert!(
            !name.contains('\u{202E}') && name.starts_with("Jokognirut"),
            "{name}"
        );
        assert_eq!(name.chars().count(), NAME_MAX_CHARS);
        people.learn(Person {
            id: UserId(8),
            first_name: "\u{0639}\u{0644}\u{064A}".into(),
            username: None,
        });
        assert_eq!(
            people.mention(UserId(8)),
            "<a href=\"tg://user?id=8\">\u{2068}\u{0639}\u{0644}\u{064A}\u{2069}</a>"
        );
        assert!(!people.learn(Person {
            id: UserId(5),
            first_name: "Budi <b>".into(),
            username: Some("Budi_S".into())
        }));
        assert!(people.learn(Person {
            id: UserId(5),
            first_name: "Budi".into(),
            username: Some("Budi_S".into())
        }));
    }
}
