-- The operational tables of SI SIAO read by the warehouse (shared/SOURCE_SCHEMA.md).
-- Primary keys only: the real database enforces no other rule, and the warehouse never relies on one.

CREATE TABLE entite (
    id INTEGER PRIMARY KEY,
    raison_sociale TEXT,
    siren TEXT,
    updated_at TEXT
);

CREATE TABLE dispositif (
    id INTEGER PRIMARY KEY,
    entite_id INTEGER,
    departement TEXT,
    nom TEXT,
    siret TEXT,
    finess TEXT,
    categorie TEXT,
    type TEXT,
    volet TEXT,
    places_financees_p177 INTEGER,
    places_financees_hors_p177 INTEGER,
    publics_acceptes TEXT,
    date_ouverture TEXT,
    date_fermeture TEXT,
    updated_at TEXT
);

CREATE TABLE groupe_places (
    id INTEGER PRIMARY KEY,
    dispositif_id INTEGER,
    nb_places INTEGER,
    temporaire INTEGER,
    date_debut TEXT,
    date_fin TEXT,
    updated_at TEXT
);

CREATE TABLE menage (
    id INTEGER PRIMARY KEY,
    siao_departement TEXT,
    date_creation TEXT,
    updated_at TEXT
);

CREATE TABLE personne (
    id INTEGER PRIMARY KEY,
    nom TEXT,
    prenom TEXT,
    date_naissance TEXT,
    sexe TEXT,
    nationalite TEXT,
    telephone TEXT,
    email TEXT,
    updated_at TEXT
);

CREATE TABLE menage_personne (
    id INTEGER PRIMARY KEY,
    menage_id INTEGER,
    personne_id INTEGER,
    role TEXT,
    date_debut TEXT,
    date_fin TEXT,
    updated_at TEXT
);

CREATE TABLE evaluation (
    id INTEGER PRIMARY KEY,
    menage_id INTEGER,
    type TEXT,
    date_evaluation TEXT,
    situation_ethos TEXT,
    violences INTEGER,
    sante INTEGER,
    sortie_institution INTEGER,
    texte TEXT,
    auteur TEXT,
    updated_at TEXT
);

CREATE TABLE note (
    id INTEGER PRIMARY KEY,
    menage_id INTEGER,
    texte TEXT,
    auteur TEXT,
    created_at TEXT,
    updated_at TEXT
);

CREATE TABLE demande (
    id INTEGER PRIMARY KEY,
    menage_id INTEGER,
    type TEXT,
    siao_departement TEXT,
    date_demande TEXT,
    canal TEXT,
    statut TEXT,
    date_statut TEXT,
    motif_non_pourvue TEXT,
    preconisation TEXT,
    prescripteur_entite_id INTEGER,
    updated_at TEXT
);

CREATE TABLE demande_personne (
    id INTEGER PRIMARY KEY,
    demande_id INTEGER,
    personne_id INTEGER,
    updated_at TEXT
);

CREATE TABLE orientation (
    id INTEGER PRIMARY KEY,
    demande_id INTEGER,
    dispositif_id INTEGER,
    groupe_places_id INTEGER,
    date_orientation TEXT,
    statut TEXT,
    date_reponse TEXT,
    motif_refus TEXT,
    updated_at TEXT
);

CREATE TABLE liste_attente (
    id INTEGER PRIMARY KEY,
    demande_id INTEGER,
    dispositif_id INTEGER,
    date_inscription TEXT,
    date_desinscription TEXT,
    motif_desinscription TEXT,
    updated_at TEXT
);

CREATE TABLE prise_en_charge (
    id INTEGER PRIMARY KEY,
    menage_id INTEGER,
    demande_id INTEGER,
    orientation_id INTEGER,
    dispositif_id INTEGER,
    groupe_places_id INTEGER,
    nb_personnes INTEGER,
    date_entree TEXT,
    date_sortie TEXT,
    motif_sortie TEXT,
    renouvellement_de INTEGER,
    updated_at TEXT
);
