//! How many people and places each département has, and how strained it is.
//!
//! Populations are the INSEE legal populations rounded to the thousand (order of
//! magnitude is what matters here). The tension of a département sets both how many
//! households fall into need per inhabitant and how the 115's capacity compares with
//! that need: Paris and Seine-Saint-Denis are saturated, the large cities strained,
//! rural départements such as Creuse have places to spare. At `scale` 1.0 a national
//! year has the order of magnitude of the real system (about 10^6 persons, several
//! 10^6 URGENCE requests, 2·10^5 insertion requests and 2·10^5 places).

/// Population in thousands of inhabitants, by COG code.
#[rustfmt::skip]
const POPULATION: &[(&str, u32)] = &[
    ("01", 660), ("02", 530), ("03", 335), ("04", 165), ("05", 141), ("06", 1100),
    ("07", 330), ("08", 270), ("09", 155), ("10", 310), ("11", 375), ("12", 280),
    ("13", 2040), ("14", 695), ("15", 144), ("16", 350), ("17", 660), ("18", 300),
    ("19", 240), ("21", 535), ("22", 605), ("23", 115), ("24", 415), ("25", 545),
    ("26", 520), ("27", 600), ("28", 430), ("29", 920), ("2A", 160), ("2B", 185),
    ("30", 750), ("31", 1420), ("32", 192), ("33", 1650), ("34", 1200), ("35", 1100),
    ("36", 218), ("37", 610), ("38", 1280), ("39", 260), ("40", 420), ("41", 330),
    ("42", 765), ("43", 228), ("44", 1450), ("45", 680), ("46", 174), ("47", 330),
    ("48", 76), ("49", 820), ("50", 495), ("51", 565), ("52", 170), ("53", 307),
    ("54", 730), ("55", 182), ("56", 760), ("57", 1045), ("58", 200), ("59", 2610),
    ("60", 830), ("61", 278), ("62", 1460), ("63", 665), ("64", 690), ("65", 229),
    ("66", 480), ("67", 1140), ("68", 765), ("69", 1880), ("70", 233), ("71", 550),
    ("72", 565), ("73", 440), ("74", 830), ("75", 2130), ("76", 1255), ("77", 1420),
    ("78", 1450), ("79", 375), ("80", 570), ("81", 390), ("82", 260), ("83", 1080),
    ("84", 560), ("85", 690), ("86", 440), ("87", 372), ("88", 362), ("89", 335),
    ("90", 142), ("91", 1300), ("92", 1625), ("93", 1650), ("94", 1400), ("95", 1250),
    ("971", 385), ("972", 360), ("973", 285), ("974", 870), ("976", 300),
];

/// Inhabitants in thousands (0 for a code outside the COG).
pub fn population(code: &str) -> u32 {
    POPULATION
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(0, |(_, p)| *p)
}

/// Tension from 0 (places to spare) to 1 (saturated).
pub fn tension(code: &str) -> f64 {
    match code {
        "75" | "93" => 1.0,
        "94" | "92" | "95" | "91" | "77" | "78" => 0.75,
        "976" | "973" => 0.7,
        "13" | "69" | "59" | "31" | "33" | "06" | "34" | "67" | "44" | "38" | "35" => 0.6,
        "23" | "48" | "15" | "05" | "04" | "09" | "46" | "52" | "55" | "36" | "58" | "90"
        | "2A" | "2B" | "32" | "43" | "19" | "39" | "61" | "70" | "65" | "12" => 0.05,
        _ => 0.35,
    }
}

/// The yearly flows and stocks of one département at a given scale.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub tension: f64,
    /// New households calling the 115, per day, on average over the year.
    pub arrivals_per_day: f64,
    /// New households with an insertion request only (never calling the 115), per day.
    pub insertion_arrivals_per_day: f64,
    /// Places of the URGENCE volet (permanent), before winter places.
    pub urgence_places: i64,
    /// Places of the INSERTION volet.
    pub insertion_places: i64,
}

/// Mean length of a need episode in days and mean household size: the 115's expected
/// demand in places per night is arrivals × episode × size.
pub const MEAN_EPISODE_DAYS: f64 = 39.5;
pub const MEAN_HOUSEHOLD_SIZE: f64 = 1.8;

pub fn profile(code: &str, scale: f64) -> Profile {
    let t = tension(code);
    let inhabitants = f64::from(population(code)) * 1000.0;
    // Households falling into need per year: 2 per 1000 inhabitants where there is no
    // tension, 16 in Paris.
    let arrivals_per_day = inhabitants * (2.0 + 14.0 * t) / 1000.0 / 365.0 * scale;
    let insertion_arrivals_per_day = inhabitants * 2.0 * (0.7 + 0.6 * t) / 1000.0 / 365.0 * scale;
    let demand_per_night = arrivals_per_day * MEAN_EPISODE_DAYS * MEAN_HOUSEHOLD_SIZE;
    // The 115's places as a share of the expected demand: 1.6 without tension (places
    // to spare), 0.3 when saturated.
    let urgence_places = (demand_per_night * (1.6 - 1.3 * t)).round() as i64;
    let insertion_places = (inhabitants * 1.6 * (0.8 + 0.6 * t) / 1000.0 * scale).round() as i64;
    Profile {
        tension: t,
        arrivals_per_day,
        insertion_arrivals_per_day,
        urgence_places: urgence_places.max(4),
        insertion_places: insertion_places.max(4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_departement_has_a_population() {
        for d in crate::territory::departements() {
            assert!(population(d.code) > 50, "{}", d.code);
        }
        let total: u32 = POPULATION.iter().map(|(_, p)| p).sum();
        assert!((60_000..72_000).contains(&total), "{total}");
    }

    #[test]
    fn paris_is_more_strained_than_creuse() {
        let paris = profile("75", 1.0);
        let creuse = profile("23", 1.0);
        let ratio = |p: &Profile| p.urgence_places as f64 / p.arrivals_per_day;
        assert!(ratio(&paris) < ratio(&creuse) / 3.0);
    }
}
