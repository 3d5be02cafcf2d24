//! The composition of a household on a day (INDICATORS.md, "Composition"), derived in
//! memory from the memberships, birth dates and sexes of the source, so that the detail
//! zone carries the composition of each event without carrying a birth date.
//!
//! Members on day d: the distinct persons with a membership of the household such that
//! `date_debut <= d` and (`date_fin` null or `d < date_fin`). Adults: members aged 18 or
//! more on d, or of unknown age with role DEMANDEUR_PRINCIPAL, CONJOINT or AUTRE_ADULTE;
//! children: the other members.

use crate::FastMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Int64Type};
use chrono::NaiveDate;

use crate::age_on;

/// The compositions of INDICATORS.md (and `INCONNUE`).
pub const COMPOSITIONS: &[&str] = &[
    "HOMME_SEUL",
    "FEMME_SEULE",
    "HOMME_SEUL_AVEC_ENFANTS",
    "FEMME_SEULE_AVEC_ENFANTS",
    "COUPLE_SANS_ENFANT",
    "COUPLE_AVEC_ENFANTS",
    "GROUPE_SANS_ENFANT",
    "GROUPE_AVEC_ENFANTS",
    "MINEUR_ISOLE",
    "INCONNUE",
];

/// One membership of a household.
#[derive(Debug, Clone)]
pub struct Membership {
    pub personne: i64,
    pub role: Option<String>,
    pub debut: NaiveDate,
    pub fin: Option<NaiveDate>,
}

/// What the composition needs of a person.
#[derive(Debug, Clone, Default)]
pub struct Person {
    pub naissance: Option<NaiveDate>,
    pub sexe: Option<String>,
}

/// A membership as the composition reads it: what its role says, not its text (a
/// national read holds millions: no string each).
#[derive(Debug, Clone, Copy)]
struct Member {
    personne: i64,
    debut: NaiveDate,
    fin: Option<NaiveDate>,
    conjoint: bool,
    adult_role: bool,
}

impl Member {
    fn new(personne: i64, role: Option<&str>, debut: NaiveDate, fin: Option<NaiveDate>) -> Self {
        let role = role.unwrap_or("");
        Member {
            personne,
            debut,
            fin,
            conjoint: role == "CONJOINT",
            adult_role: ADULT_ROLES.contains(&role),
        }
    }
}

/// The sexes the compositions name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Sexe {
    M,
    F,
    /// Null, or any other code.
    #[default]
    Autre,
}

impl Sexe {
    fn of(code: Option<&str>) -> Self {
        match code {
            Some("M") => Sexe::M,
            Some("F") => Sexe::F,
            _ => Sexe::Autre,
        }
    }
}

/// A person as the composition reads it.
#[derive(Debug, Clone, Copy, Default)]
struct Known {
    naissance: Option<NaiveDate>,
    sexe: Sexe,
}

/// The memberships of every household and the persons they name, read once.
#[derive(Debug, Default)]
pub struct Households {
    members: FastMap<i64, Vec<Member>>,
    persons: FastMap<i64, Known>,
}

const ADULT_ROLES: [&str; 3] = ["DEMANDEUR_PRINCIPAL", "CONJOINT", "AUTRE_ADULTE"];

impl Households {
    /// From the source batches `menage_personne` and `personne` (raw ids), if present.
    pub fn from_batches(
        menage_personne: Option<&RecordBatch>,
        personne: Option<&RecordBatch>,
    ) -> Self {
        let mut out = Households::default();
        if let Some(b) = personne {
            let ids = b
                .column_by_name("id")
                .and_then(|c| c.as_primitive_opt::<Int64Type>());
            let births = b
                .column_by_name("date_naissance")
                .and_then(|c| c.as_primitive_opt::<Date32Type>());
            let sexes = b
                .column_by_name("sexe")
                .and_then(|c| c.as_string_opt::<i32>());
            if let Some(ids) = ids {
                out.persons.reserve(b.num_rows());
                for i in 0..b.num_rows() {
                    if ids.is_null(i) {
                        continue;
                    }
                    let naissance = births
                        .filter(|a| a.is_valid(i))
                        .and_then(|a| Date32Type::to_naive_date_opt(a.value(i)));
                    let sexe = Sexe::of(sexes.filter(|a| a.is_valid(i)).map(|a| a.value(i)));
                    out.persons.insert(ids.value(i), Known { naissance, sexe });
                }
            }
        }
        if let Some(b) = menage_personne {
            let int = |name: &str| {
                b.column_by_name(name)
                    .and_then(|c| c.as_primitive_opt::<Int64Type>())
            };
            let date = |name: &str| {
                b.column_by_name(name)
                    .and_then(|c| c.as_primitive_opt::<Date32Type>())
            };
            let roles = b
                .column_by_name("role")
                .and_then(|c| c.as_string_opt::<i32>());
            if let (Some(menages), Some(personnes), Some(debuts)) =
                (int("menage_id"), int("personne_id"), date("date_debut"))
            {
                let fins = date("date_fin");
                for i in 0..b.num_rows() {
                    if menages.is_null(i) || personnes.is_null(i) || debuts.is_null(i) {
                        continue;
                    }
                    let Some(debut) = Date32Type::to_naive_date_opt(debuts.value(i)) else {
                        continue;
                    };
                    let fin = fins
                        .filter(|a| a.is_valid(i))
                        .and_then(|a| Date32Type::to_naive_date_opt(a.value(i)));
                    let role = roles.filter(|a| a.is_valid(i)).map(|a| a.value(i));
                    out.members
                        .entry(menages.value(i))
                        .or_default()
                        .push(Member::new(personnes.value(i), role, debut, fin));
                }
            }
        }
        out
    }

    /// Adds a membership (tests, and callers holding rows rather than batches).
    pub fn add_member(&mut self, menage: i64, m: Membership) {
        self.members.entry(menage).or_default().push(Member::new(
            m.personne,
            m.role.as_deref(),
            m.debut,
            m.fin,
        ));
    }

    /// Adds a person.
    pub fn add_person(&mut self, id: i64, person: Person) {
        self.persons.insert(
            id,
            Known {
                naissance: person.naissance,
                sexe: Sexe::of(person.sexe.as_deref()),
            },
        );
    }

    /// The composition of household `menage` on day `on`.
    pub fn composition(&self, menage: i64, on: NaiveDate) -> &'static str {
        let Some(memberships) = self.members.get(&menage) else {
            return "INCONNUE";
        };
        // Distinct members on the day, in the order of their first membership; a person
        // with two memberships that day takes either role (CONJOINT, or an adult role for
        // an unknown age) if one says so. Households are small: no list is built (this
        // runs for every request, orientation and stay of a national read).
        let active = |m: &Member| m.debut <= on && m.fin.is_none_or(|f| on < f);
        let mut count = 0usize;
        let mut adults = 0usize;
        let mut conjoints = 0usize;
        let mut adult_sex = Sexe::Autre;
        for (j, m) in memberships.iter().enumerate() {
            if !active(m)
                || memberships[..j]
                    .iter()
                    .any(|e| e.personne == m.personne && active(e))
            {
                continue;
            }
            let (mut conjoint, mut adult_role) = (false, false);
            for e in &memberships[j..] {
                if e.personne == m.personne && active(e) {
                    conjoint |= e.conjoint;
                    adult_role |= e.adult_role;
                }
            }
            count += 1;
            let person = self.persons.get(&m.personne);
            let adult = match person.and_then(|x| x.naissance) {
                Some(b) => age_on(b, on) >= 18,
                None => adult_role,
            };
            if adult {
                adults += 1;
                if conjoint {
                    conjoints += 1;
                }
                adult_sex = person.map_or(Sexe::Autre, |x| x.sexe);
            }
        }
        if count == 0 {
            return "INCONNUE";
        }
        let children = count > adults;
        match adults {
            0 => "MINEUR_ISOLE",
            1 => match (adult_sex, children) {
                (Sexe::M, false) => "HOMME_SEUL",
                (Sexe::M, true) => "HOMME_SEUL_AVEC_ENFANTS",
                (Sexe::F, false) => "FEMME_SEULE",
                (Sexe::F, true) => "FEMME_SEULE_AVEC_ENFANTS",
                (Sexe::Autre, _) => "INCONNUE",
            },
            2 if conjoints >= 1 => {
                if children {
                    "COUPLE_AVEC_ENFANTS"
                } else {
                    "COUPLE_SANS_ENFANT"
                }
            }
            _ => {
                if children {
                    "GROUPE_AVEC_ENFANTS"
                } else {
                    "GROUPE_SANS_ENFANT"
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn member(p: i64, role: &str, debut: NaiveDate, fin: Option<NaiveDate>) -> Membership {
        Membership {
            personne: p,
            role: Some(role.to_owned()),
            debut,
            fin,
        }
    }

    fn person(birth: Option<NaiveDate>, sexe: &str) -> Person {
        Person {
            naissance: birth,
            sexe: Some(sexe.to_owned()),
        }
    }

    #[test]
    fn compositions_follow_the_convention() {
        let mut h = Households::default();
        // Household 1: a woman and her son, who turns 18 on 2025-03-14.
        h.add_person(1, person(Some(d(1990, 1, 1)), "F"));
        h.add_person(2, person(Some(d(2007, 3, 14)), "M"));
        h.add_member(1, member(1, "DEMANDEUR_PRINCIPAL", d(2024, 1, 1), None));
        h.add_member(1, member(2, "ENFANT", d(2024, 1, 1), None));
        assert_eq!(h.composition(1, d(2025, 3, 13)), "FEMME_SEULE_AVEC_ENFANTS");
        // On his birthday the son is an adult, and no CONJOINT: a group.
        assert_eq!(h.composition(1, d(2025, 3, 14)), "GROUPE_SANS_ENFANT");
        // Household 2: a couple; the partner leaves on 2025-06-01 (excluded).
        h.add_person(3, person(Some(d(1980, 5, 5)), "M"));
        h.add_person(4, person(None, "F"));
        h.add_member(2, member(3, "DEMANDEUR_PRINCIPAL", d(2025, 1, 1), None));
        h.add_member(2, member(4, "CONJOINT", d(2025, 1, 1), Some(d(2025, 6, 1))));
        assert_eq!(h.composition(2, d(2025, 5, 31)), "COUPLE_SANS_ENFANT");
        assert_eq!(h.composition(2, d(2025, 6, 1)), "HOMME_SEUL");
        // Before anyone joined: no member.
        assert_eq!(h.composition(2, d(2024, 12, 31)), "INCONNUE");
        // Household 3: a 16-year-old alone; household 4: an adult of sex INCONNU.
        h.add_person(5, person(Some(d(2009, 1, 1)), "M"));
        h.add_member(3, member(5, "DEMANDEUR_PRINCIPAL", d(2025, 1, 1), None));
        assert_eq!(h.composition(3, d(2025, 2, 1)), "MINEUR_ISOLE");
        h.add_person(6, person(Some(d(1970, 1, 1)), "INCONNU"));
        h.add_member(4, member(6, "DEMANDEUR_PRINCIPAL", d(2025, 1, 1), None));
        assert_eq!(h.composition(4, d(2025, 2, 1)), "INCONNUE");
        // Unknown age with role ENFANT: a child; with role AUTRE_ADULTE: an adult.
        h.add_person(7, person(None, "M"));
        h.add_member(4, member(7, "ENFANT", d(2025, 1, 1), None));
        assert_eq!(h.composition(4, d(2025, 2, 1)), "INCONNUE");
        h.add_person(8, person(Some(d(1960, 1, 1)), "F"));
        h.add_person(9, person(None, "M"));
        h.add_member(5, member(8, "DEMANDEUR_PRINCIPAL", d(2025, 1, 1), None));
        h.add_member(5, member(9, "AUTRE_ADULTE", d(2025, 1, 1), None));
        assert_eq!(h.composition(5, d(2025, 2, 1)), "GROUPE_SANS_ENFANT");
        // Unknown household.
        assert_eq!(h.composition(99, d(2025, 2, 1)), "INCONNUE");
    }
}
