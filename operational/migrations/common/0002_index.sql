-- Indexes the warehouse's incremental reads use: the watermark on updated_at, and the
-- references it follows from a changed row to the rows that depend on it.
CREATE INDEX entite_updated_at ON entite (updated_at);
CREATE INDEX dispositif_updated_at ON dispositif (updated_at);
CREATE INDEX groupe_places_updated_at ON groupe_places (updated_at);
CREATE INDEX menage_updated_at ON menage (updated_at);
CREATE INDEX personne_updated_at ON personne (updated_at);
CREATE INDEX menage_personne_updated_at ON menage_personne (updated_at);
CREATE INDEX menage_personne_menage_id ON menage_personne (menage_id);
CREATE INDEX menage_personne_personne_id ON menage_personne (personne_id);
CREATE INDEX evaluation_updated_at ON evaluation (updated_at);
CREATE INDEX evaluation_menage_id ON evaluation (menage_id);
CREATE INDEX demande_updated_at ON demande (updated_at);
CREATE INDEX demande_menage_id ON demande (menage_id);
CREATE INDEX demande_personne_updated_at ON demande_personne (updated_at);
CREATE INDEX demande_personne_demande_id ON demande_personne (demande_id);
CREATE INDEX demande_personne_personne_id ON demande_personne (personne_id);
CREATE INDEX orientation_updated_at ON orientation (updated_at);
CREATE INDEX orientation_demande_id ON orientation (demande_id);
CREATE INDEX liste_attente_updated_at ON liste_attente (updated_at);
CREATE INDEX liste_attente_demande_id ON liste_attente (demande_id);
CREATE INDEX prise_en_charge_updated_at ON prise_en_charge (updated_at);
CREATE INDEX prise_en_charge_menage_id ON prise_en_charge (menage_id);
CREATE INDEX prise_en_charge_demande_id ON prise_en_charge (demande_id);
