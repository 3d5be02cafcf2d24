-- The operational tables of SI SIAO read by the warehouse (shared/SOURCE_SCHEMA.md).
-- Primary keys only: the real database enforces no other rule, and the warehouse never relies on one.

CREATE TABLE entite (
    id BIGINT PRIMARY KEY,
    raison_sociale TEXT,
    siren TEXT,
    updated_at TIMESTAMPTZ
);

CREATE TABLE dispositif (
    id BIGINT PRIMARY KEY,
    entite_id BIGINT,
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
    date_ouverture DATE,
    date_fermeture DATE,
    updated_at TIMESTAMPTZ
);

CREATE TABLE groupe_places (
    id BIGINT PRIMARY KEY,
    dispositif_id BIGINT,
    nb_places INTEGER,
    temporaire BOOLEAN,
    date_debut DATE,
    date_fin DATE,
    updated_at TIMESTAMPTZ
);

CREATE TABLE menage (
    id BIGINT PRIMARY KEY,
    siao_departement TEXT,
    date_creation DATE,
    updated_at TIMESTAMPTZ
);

CREATE TABLE personne (
    id BIGINT PRIMARY KEY,
    nom TEXT,
    prenom TEXT,
    date_naissance DATE,
    sexe TEXT,
    nationalite TEXT,
    telephone TEXT,
    email TEXT,
    updated_at TIMESTAMPTZ
);

CREATE TABLE menage_personne (
    id BIGINT PRIMARY KEY,
    menage_id BIGINT,
    personne_id BIGINT,
    role TEXT,
    date_debut DATE,
    date_fin DATE,
    updated_at TIMESTAMPTZ
);

CREATE TABLE evaluation (
    id BIGINT PRIMARY KEY,
    menage_id BIGINT,
    type TEXT,
    date_evaluation DATE,
    situation_ethos TEXT,
    violences BOOLEAN,
    sante BOOLEAN,
    sortie_institution BOOLEAN,
    texte TEXT,
    auteur TEXT,
    updated_at TIMESTAMPTZ
);

CREATE TABLE note (
    id BIGINT PRIMARY KEY,
    menage_id BIGINT,
    texte TEXT,
    auteur TEXT,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ
);

CREATE TABLE demande (
    id BIGINT PRIMARY KEY,
    menage_id BIGINT,
    type TEXT,
    siao_departement TEXT,
    date_demande TIMESTAMPTZ,
    canal TEXT,
    statut TEXT,
    date_statut TIMESTAMPTZ,
    motif_non_pourvue TEXT,
    preconisation TEXT,
    prescripteur_entite_id BIGINT,
    updated_at TIMESTAMPTZ
);

CREATE TABLE demande_personne (
    id BIGINT PRIMARY KEY,
    demande_id BIGINT,
    personne_id BIGINT,
    updated_at TIMESTAMPTZ
);

CREATE TABLE orientation (
    id BIGINT PRIMARY KEY,
    demande_id BIGINT,
    dispositif_id BIGINT,
    groupe_places_id BIGINT,
    date_orientation DATE,
    statut TEXT,
    date_reponse DATE,
    motif_refus TEXT,
    updated_at TIMESTAMPTZ
);

CREATE TABLE liste_attente (
    id BIGINT PRIMARY KEY,
    demande_id BIGINT,
    dispositif_id BIGINT,
    date_inscription DATE,
    date_desinscription DATE,
    motif_desinscription TEXT,
    updated_at TIMESTAMPTZ
);

CREATE TABLE prise_en_charge (
    id BIGINT PRIMARY KEY,
    menage_id BIGINT,
    demande_id BIGINT,
    orientation_id BIGINT,
    dispositif_id BIGINT,
    groupe_places_id BIGINT,
    nb_personnes INTEGER,
    date_entree DATE,
    date_sortie DATE,
    motif_sortie TEXT,
    renouvellement_de BIGINT,
    updated_at TIMESTAMPTZ
);
