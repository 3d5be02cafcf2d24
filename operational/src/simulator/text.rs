//! Names, contact details and the free text workers type: generated, never real.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::pick;

pub const NOMS: &[&str] = &[
    "MARTIN",
    "BERNARD",
    "THOMAS",
    "PETIT",
    "ROBERT",
    "RICHARD",
    "DURAND",
    "DUBOIS",
    "MOREAU",
    "LAURENT",
    "SIMON",
    "MICHEL",
    "LEFEBVRE",
    "LEROY",
    "ROUX",
    "DAVID",
    "BERTRAND",
    "MOREL",
    "FOURNIER",
    "GIRARD",
    "BONNET",
    "DUPONT",
    "LAMBERT",
    "FONTAINE",
    "ROUSSEAU",
    "VINCENT",
    "DIALLO",
    "TRAORE",
    "KONATE",
    "BENALI",
    "HADDAD",
    "NGUYEN",
    "POPESCU",
    "KOWALSKI",
    "OUEDRAOGO",
    "MENSAH",
    "CISSE",
    "CAMARA",
    "SYLLA",
    "KEITA",
    "BOUZID",
    "MANSOURI",
    "IVANOV",
    "DA SILVA",
    "PEREIRA",
    "FERREIRA",
    "YILMAZ",
    "KAYA",
    "AHMADI",
    "HUSSAIN",
];
pub const PRENOMS_F: &[&str] = &[
    "MARIE",
    "NATHALIE",
    "ISABELLE",
    "SYLVIE",
    "AMINATA",
    "FATOUMATA",
    "YASMINE",
    "SARAH",
    "LEA",
    "CHLOE",
    "INES",
    "AICHA",
    "ELENA",
    "MARIAM",
    "NADIA",
    "EMMA",
    "JADE",
    "LOUISE",
    "AMINA",
    "KHADIJA",
    "OLGA",
    "ANA",
    "MEHWISH",
    "ZAHRA",
];
pub const PRENOMS_M: &[&str] = &[
    "JEAN", "PHILIPPE", "MICHEL", "ALAIN", "MAMADOU", "MOUSSA", "KARIM", "MOHAMED", "LUCAS",
    "HUGO", "YANIS", "ADAM", "IVAN", "OMAR", "SAMUEL", "PIERRE", "NICOLAS", "DAVID", "BOUBACAR",
    "IBRAHIMA", "AHMED", "SERGEI", "JOAO", "ALI",
];
const AUTEURS: &[&str] = &[
    "Claire Fontaine",
    "Rachid Belkacem",
    "Sophie Marchand",
    "Julien Perrin",
    "Awa N'Diaye",
    "Thomas Keller",
    "Nora Haddou",
    "Benoît Lemaire",
];
const FONCTIONS: &[&str] = &[
    "écoutante 115",
    "travailleur social",
    "coordinatrice SIAO",
    "maraude",
    "accueil de jour",
    "service social départemental",
];

const SITUATIONS: &[&str] = &[
    "dort dans sa voiture depuis plusieurs nuits",
    "était hébergé·e chez un tiers jusqu'à hier",
    "a quitté le domicile conjugal après des violences",
    "sort d'hospitalisation sans solution d'hébergement",
    "a été expulsé·e de son logement la semaine dernière",
    "est à la rue depuis une dizaine de jours",
    "sort de détention sans domicile",
    "vivait dans un squat évacué ce matin",
    "a perdu son emploi et son logement de fonction",
    "est arrivé·e récemment en France",
];
const BESOINS: &[&str] = &[
    "demande une mise à l'abri pour la nuit",
    "souhaite une orientation vers un hébergement stable",
    "a besoin d'un accompagnement pour ses droits",
    "demande une place adaptée à sa composition familiale",
    "exprime une grande fatigue et des difficultés de santé",
    "cherche une solution proche de l'école des enfants",
];
const SUITES: &[&str] = &[
    "Dossier de logement social en cours.",
    "Rendez-vous pris avec l'assistante sociale de secteur.",
    "Orientation vers l'accueil de jour pour la domiciliation.",
    "À revoir lors de la prochaine évaluation.",
    "Ressources : RSA en cours d'ouverture.",
    "Aucune ressource déclarée.",
    "Suivi médical à organiser.",
    "Demande SIAO insertion à instruire.",
];

/// A worker's name and function, as the operational app stores `auteur`.
pub fn auteur(rng: &mut ChaCha8Rng) -> String {
    format!("{} ({})", pick(rng, AUTEURS), pick(rng, FONCTIONS))
}

/// A sentence or three, as a worker would write in an evaluation or a note.
pub fn texte(rng: &mut ChaCha8Rng, prenom: &str) -> String {
    let prenom = capitalise(prenom);
    let mut text = format!(
        "{prenom} {} et {}.",
        pick(rng, SITUATIONS),
        pick(rng, BESOINS)
    );
    for _ in 0..rng.random_range(0..3) {
        text.push(' ');
        let suite = SUITES[rng.random_range(0..SUITES.len())];
        text.push_str(suite);
    }
    text
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_string() + &chars.as_str().to_lowercase(),
        None => String::new(),
    }
}
