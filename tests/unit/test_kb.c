/* SPDX-License-Identifier: MIT */
/*
 * test_kb.c - the knowledge base (issue #20, docs/internals/KB.md): French analysis (folding,
 * elisions, stop words, stemming, synonyms), BM25F ordering, the confidence rule, question
 * detection, the loader on the test base, and questions in the conversation (feedback state in
 * the session, stats, the pending question kept).
 */
#include <stdio.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/geo.h"
#include "engine/kb.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "task.h"

#define DATA FB_SOURCE_DIR "/tests/data/dialogs"

/* The analysed terms of `text` as one string (new). */
static char *terms(const fb_kb_t *kb, const char *text)
{
    fb_buf_t b;
    fb_buf_init(&b, 1u << 16);
    fb_kb_terms(kb, text, &b);
    return fb_buf_take(&b);
}

static void check_terms(const fb_kb_t *kb, const char *text, const char *want)
{
    char *got = terms(kb, text);
    ASSERT_STR_EQ(got, want);
    fb_free(got);
}

static void check_same_terms(const fb_kb_t *kb, const char *a, const char *b)
{
    char *x = terms(kb, a), *y = terms(kb, b);
    ASSERT_STR_EQ(x, y);
    ASSERT(x[0] != '\0');
    fb_free(x);
    fb_free(y);
}

TEST_IMPL(kb_normalisation)
{
    /* accents, case, punctuation */
    check_same_terms(NULL, "Dépollution", "depollution");
    check_same_terms(NULL, "FRICHE !!!", "friche");
    /* elisions and stop words: what is left is what the question is about */
    check_terms(NULL, "qu'est-ce que le ZAN ?", "zan");
    check_terms(NULL, "c'est quoi l'EPF", "epf");
    check_terms(NULL, "Comment est-ce qu'on fait ?", "fait");
    check_terms(NULL, "", "");
    check_terms(NULL, "le la les de du ?", "");
    /* short words (acronyms) are kept whole */
    check_terms(NULL, "SIS PLU DUP", "sis plu dup");
    return 0;
}

TEST_IMPL(kb_stemming)
{
    /* plurals and genders meet, with or without accents */
    check_same_terms(NULL, "friches", "friche");
    check_same_terms(NULL, "financements", "financer");
    check_same_terms(NULL, "polluée", "pollue");
    check_same_terms(NULL, "polluees", "pollué");
    check_same_terms(NULL, "propriétaires", "proprietaire");
    check_same_terms(NULL, "qui paye", "qui paie");
    check_terms(NULL, "friches", "frich");
    /* a rent is no law: Snowball stems « loyer » to « loi » */
    check_same_terms(NULL, "loyers", "loyer");
    check_terms(NULL, "le loyer et la loi", "loyer loi");
    check_terms(NULL, "un foyer", "foyer");
    check_same_terms(NULL, "nettoyer", "nettoie");
    return 0;
}

static fb_kb_t *small_kb(void)
{
    fb_kb_t *kb = fb_kb_new();
    const char *g1[] = {"fonds vert", "recyclage foncier"};
    const char *g2[] = {"casias", "basias", "ancien basias"};
    const char *g3[] = {"basias", "inventaire historique"}; /* shares "basias": merged with g2 */
    fb_kb_add_synonyms(kb, g1, 2);
    fb_kb_add_synonyms(kb, g2, 3);
    fb_kb_add_synonyms(kb, g3, 2);
    const char *q0[] = {"Comment obtenir le fonds vert ?", "subvention pour une friche"};
    const char *m0[] = {"fonds vert"};
    const char *q1[] = {"C'est quoi CASIAS ?", "mon site est dans basias"};
    const char *m1[] = {"casias"};
    const char *q2[] = {"Qui paye la dépollution ?", "le pollueur doit il payer"};
    const char *q3[] = {"Comment vendre un terrain communal ?", "cession d'un terrain"};
    ASSERT_EQ(fb_kb_add_doc(kb, q0, 2, m0, 1, "Le Fonds vert finance le recyclage des friches."),
              0);
    ASSERT_EQ(fb_kb_add_doc(kb, q1, 2, m1, 1, "La carte des anciens sites industriels."), 1);
    ASSERT_EQ(fb_kb_add_doc(kb, q2, 2, NULL, 0, "Le dernier exploitant paie : pollueur-payeur."),
              2);
    ASSERT_EQ(fb_kb_add_doc(kb, q3, 2, NULL, 0,
                            "Une délibération du conseil municipal, et un "
                            "terrain pollué se vend avec ses études."),
              3);
    ASSERT_OK(fb_kb_build(kb));
    ASSERT_EQ(fb_kb_size(kb), 4);
    return kb;
}

TEST_IMPL(kb_synonyms)
{
    fb_kb_t *kb = small_kb();
    check_same_terms(kb, "les fonds verts", "recyclage foncier");
    check_same_terms(kb, "basias", "CASIAS");
    check_same_terms(kb, "ancien BASIAS", "casias");
    check_same_terms(kb, "inventaire historique", "casias"); /* merged groups */
    /* the longest phrase wins, the rest stays */
    check_same_terms(kb, "ancien basias friche", "casias friches");
    char *t = terms(kb, "fonds vert");
    ASSERT(t[0] == '=');
    fb_free(t);
    /* a synonym asked finds the answer written with the other phrase */
    fb_kb_result_t r;
    fb_kb_search(kb, "aide au recyclage foncier ?", &r);
    ASSERT(r.n >= 1);
    ASSERT_EQ(r.hits[0].doc, 0);
    fb_kb_search(kb, "mon terrain est dans l'inventaire historique", &r);
    ASSERT_EQ(r.hits[0].doc, 1);
    fb_kb_free(kb);
    return 0;
}

TEST_IMPL(kb_bm25_ordering)
{
    fb_kb_t *kb = small_kb();
    fb_kb_result_t r;
    fb_kb_search(kb, "qui doit payer la depollution", &r);
    ASSERT(r.n >= 1);
    ASSERT_EQ(r.hits[0].doc, 2);
    /* "terrain" is in doc 3's questions, and only in doc 3's text elsewhere: questions outweigh
     * text, and a term in the questions and the text outweighs the questions alone */
    fb_kb_search(kb, "vendre le terrain", &r);
    ASSERT_EQ(r.hits[0].doc, 3);
    /* "pollué" is only in doc 3's text (weight 0.3): it still ranks, below a questions match */
    fb_kb_search(kb, "pollueur pollué", &r);
    ASSERT(r.n >= 2);
    ASSERT_EQ(r.hits[0].doc, 2);
    for (size_t i = 1; i < r.n; i++)
        ASSERT(r.hits[i].score <= r.hits[i - 1].score);
    fb_kb_free(kb);
    return 0;
}

TEST_IMPL(kb_confidence)
{
    fb_kb_t *kb = small_kb();
    fb_kb_result_t r;
    /* the rule itself */
    ASSERT(fb_kb_confident(FB_KB_ANSWER_NORM, FB_KB_MIN_MARGIN));
    ASSERT(fb_kb_confident(1.0, 1.0));
    /* between the two norms the bot asks, even with no second answer at all */
    ASSERT(!fb_kb_confident(FB_KB_ANSWER_NORM - 0.01, 1.0));
    ASSERT(!fb_kb_confident(FB_KB_MIN_NORM, 1.0));
    /* a close second: never sure */
    ASSERT(!fb_kb_confident(1.0, FB_KB_MIN_MARGIN - 0.01));
    /* an answer's own question: confident */
    fb_kb_search(kb, "Comment obtenir le fonds vert ?", &r);
    ASSERT(r.confident);
    ASSERT(r.norm > 0 && r.norm <= 1);
    /* nothing in common: no hit at all */
    fb_kb_search(kb, "quelle heure est-il ?", &r);
    ASSERT_EQ(r.n, 0);
    ASSERT(!r.confident);
    /* one known word lost among unknown ones: a hit, but not a sure one */
    fb_kb_search(kb, "recette de tarte aux pommes pour la fete de la friche du village", &r);
    ASSERT(r.n >= 1);
    ASSERT(!r.confident);
    /* nothing analysable */
    fb_kb_search(kb, "?!", &r);
    ASSERT_EQ(r.n_terms, 0);
    ASSERT(!r.confident);
    fb_kb_free(kb);
    return 0;
}

/* « c'est quoi X » goes to the answer written for « c'est quoi X », even when other answers share
 * X's term (a tie for the margin rule); a definition question that two answers claim, or one with
 * other words, keeps the margin rule. */
TEST_IMPL(kb_definition_question)
{
    fb_kb_t *kb = fb_kb_new();
    const char *q0[] = {"C'est quoi un EPF ?", "établissement public foncier"};
    const char *q1[] = {"L'EPF peut-il acheter à notre place ?", "portage par l'EPF"};
    const char *q2[] = {"Un EPF peut-il nous prêter ?", "EPF et financement"};
    ASSERT_EQ(fb_kb_add_doc(kb, q0, 2, NULL, 0, "Un EPF est un organisme public des friches."), 0);
    ASSERT_EQ(fb_kb_add_doc(kb, q1, 2, NULL, 0, "L'EPF achète et porte la friche."), 1);
    ASSERT_EQ(fb_kb_add_doc(kb, q2, 2, NULL, 0, "L'EPF ne prête pas, il porte la friche."), 2);
    /* the base's subject, « friche », in every answer; « EPF » in three of seven */
    const char *q3[] = {"C'est quoi une friche ?", "définition d'une friche"};
    const char *q4[] = {"Qui paye la dépollution de la friche ?", "pollueur payeur"};
    const char *q5[] = {"Faut-il un permis de démolir la friche ?", "démolition"};
    const char *q6[] = {"Combien de temps dure le projet de friche ?", "durée"};
    ASSERT_EQ(fb_kb_add_doc(kb, q3, 2, NULL, 0, "Une friche est un bien inutilisé."), 3);
    ASSERT_EQ(fb_kb_add_doc(kb, q4, 2, NULL, 0, "Le pollueur de la friche paie."), 4);
    ASSERT_EQ(fb_kb_add_doc(kb, q5, 2, NULL, 0, "Selon la commune, pour la friche."), 5);
    ASSERT_EQ(fb_kb_add_doc(kb, q6, 2, NULL, 0, "Des années, pour une friche."), 6);
    ASSERT_OK(fb_kb_build(kb));
    fb_kb_result_t r;
    /* « à quoi sert X », « X ça sert à quoi » are definition forms too */
    fb_kb_search(kb, "l'EPF ça sert à quoi", &r);
    ASSERT(r.n >= 1);
    ASSERT_EQ(r.hits[0].doc, 0);
    ASSERT(r.margin == 1);
    fb_kb_search(kb, "a quoi sert un epf", &r);
    ASSERT_EQ(r.hits[0].doc, 0);
    ASSERT(r.margin == 1);
    fb_kb_search(kb, "c koi un EPF", &r);
    ASSERT(r.n >= 3);
    ASSERT_EQ(r.hits[0].doc, 0);
    ASSERT(r.confident);
    /* « c quoi » and « cest quoi » as typed; « avec quoi » holds « c quoi » but asks no
     * definition */
    fb_kb_search(kb, "c quoi un EPF", &r);
    ASSERT_EQ(r.hits[0].doc, 0);
    ASSERT(r.confident);
    fb_kb_search(kb, "cest quoi un EPF", &r);
    ASSERT_EQ(r.hits[0].doc, 0);
    ASSERT(r.confident);
    fb_kb_search(kb, "avec quoi un EPF", &r);
    ASSERT(!r.confident);
    /* a bare name asks what « c'est quoi » asks (is_bare()) */
    fb_kb_search(kb, "EPF", &r);
    ASSERT_EQ(r.hits[0].doc, 0);
    ASSERT(r.confident);
    fb_kb_search(kb, "l'EPF ?", &r);
    ASSERT_EQ(r.hits[0].doc, 0);
    ASSERT(r.confident);
    /* but not the base's subject, which half the answers or more use: « la friche » alone
     * asks nothing yet (the margin rule decides, as for any word), « c'est quoi une friche »
     * asks its definition */
    fb_kb_search(kb, "la friche", &r);
    ASSERT(r.margin < 1);
    fb_kb_search(kb, "friche ?", &r);
    ASSERT(r.margin < 1);
    fb_kb_search(kb, "c'est quoi une friche", &r);
    ASSERT_EQ(r.hits[0].doc, 3);
    ASSERT(r.confident);
    /* the same term with an interrogative word, or in a longer message: three answers tie, no
     * sure answer */
    fb_kb_search(kb, "quand l'EPF ?", &r);
    ASSERT(!r.confident);
    fb_kb_search(kb, "EPF EPF EPF EPF EPF", &r);
    ASSERT(!r.confident);
    /* a definition question with another known word is not that answer's definition */
    fb_kb_search(kb, "qu'est-ce que le portage par l'EPF ?", &r);
    ASSERT_EQ(r.hits[0].doc, 1);
    fb_kb_free(kb);

    /* two answers that both define X: no preference */
    kb = fb_kb_new();
    const char *d0[] = {"C'est quoi un SIS ?", "secteur"};
    const char *d1[] = {"Que veut dire SIS ?", "information"};
    ASSERT_EQ(fb_kb_add_doc(kb, d0, 2, NULL, 0, "Un secteur."), 0);
    ASSERT_EQ(fb_kb_add_doc(kb, d1, 2, NULL, 0, "Une information."), 1);
    ASSERT_OK(fb_kb_build(kb));
    fb_kb_search(kb, "c'est quoi un SIS ?", &r);
    ASSERT(!r.confident);
    fb_kb_free(kb);
    return 0;
}

TEST_IMPL(kb_own_case)
{
    /* the status of the user's own file, an amount for their commune or site */
    ASSERT(fb_kb_is_own_case("où en est notre dossier déposé en mars ?"));
    ASSERT(fb_kb_is_own_case("ou en est le permis de construire que la SCI a depose"));
    ASSERT(fb_kb_is_own_case("notre dossier fonds vert déposé en mars a-t-il été retenu"));
    ASSERT(fb_kb_is_own_case("la taxe d'aménagement c'est combien pour notre commune"));
    ASSERT(fb_kb_is_own_case("combien coûte la dépollution de notre site ?"));
    ASSERT(fb_kb_is_own_case("quel est le montant pour notre ancienne friche"));
    /* a refusal given to us (seventh round), the winners of one round */
    ASSERT(fb_kb_is_own_case("la DDT nous a refusé le permis, recours ?"));
    ASSERT(fb_kb_is_own_case("la banque nous a rejeté le prêt"));
    ASSERT(fb_kb_is_own_case("qui a gagné l'appel d'offres CRE de juin"));
    ASSERT(fb_kb_is_own_case("qui a été retenu au fonds vert dans le département"));
    ASSERT(fb_kb_is_own_case("qui ont remporté les appels à projets"));
    ASSERT(!fb_kb_is_own_case("qui a le droit de demander la DETR"));
    ASSERT(!fb_kb_is_own_case("qui a eu l'idée de ce bot"));
    ASSERT(!fb_kb_is_own_case("un permis refusé, quels recours ?"));
    /* general questions, even with a possessive or « combien » */
    ASSERT(!fb_kb_is_own_case("c'est la ddtm qui instruit notre dossier ou l'ademe ?"));
    ASSERT(!fb_kb_is_own_case("comment déposer notre dossier fonds vert"));
    ASSERT(!fb_kb_is_own_case("combien coûte une dépollution ?"));
    ASSERT(!fb_kb_is_own_case("combien de temps pour notre projet"));
    ASSERT(!fb_kb_is_own_case("combien d'années pour notre friche"));
    ASSERT(!fb_kb_is_own_case("notre ancienne décharge peut accueillir des panneaux ?"));
    /* the bot's own follow-up is a status the base does answer */
    /* a filed dossier received or rejected; money we received; a name or contact details of
     * ours */
    ASSERT(fb_kb_is_own_case("la ddt a reçu notre dossier ?"));
    ASSERT(fb_kb_is_own_case("notre demande de DETR a été rejetée, pourquoi"));
    ASSERT(fb_kb_is_own_case("combien on a touché de DSIL l'année dernière"));
    ASSERT(fb_kb_is_own_case("le montant que nous avons perçu de la Région"));
    ASSERT(fb_kb_is_own_case("le notaire de notre commune s'appelle comment"));
    ASSERT(fb_kb_is_own_case("le numéro de téléphone de la DDT de notre département"));
    ASSERT(fb_kb_is_own_case("notre dossier de permis de construire est incomplet, que faire"));
    ASSERT(fb_kb_is_own_case("la banque des territoires nous a déjà prêté de l'argent ?"));
    ASSERT(fb_kb_is_own_case("l'EPF nous a signé la convention ?"));
    ASSERT(!fb_kb_is_own_case("l'EPF peut nous prêter de l'argent ?"));
    ASSERT(!fb_kb_is_own_case("que faire si un dossier fonds vert est incomplet"));
    ASSERT(!fb_kb_is_own_case("on a reçu une DIA pour la friche, on peut préempter ?"));
    ASSERT(!fb_kb_is_own_case("on a obtenu la DETR, on peut la cumuler avec le fonds vert ?"));
    ASSERT(!fb_kb_is_own_case("qui contacter pour notre friche"));
    ASSERT(!fb_kb_is_own_case("ou en sont les etapes de mon projet"));
    ASSERT(!fb_kb_is_own_case("combien d'étapes pour notre projet ?"));
    /* what one's own document says; whether to sign one's own paper */
    ASSERT(fb_kb_is_own_case("notre plu dit quoi sur la zone UX"));
    ASSERT(fb_kb_is_own_case("le PLU de notre commune autorise les logements ?"));
    ASSERT(fb_kb_is_own_case("l'EPF nous a envoyé une convention, on la signe ou pas ?"));
    ASSERT(fb_kb_is_own_case("un développeur nous propose un bail solaire, on signe ?"));
    ASSERT(!fb_kb_is_own_case("comment modifier notre plu pour la friche"));
    ASSERT(!fb_kb_is_own_case("que doit prévoir notre PLU sur une friche"));
    ASSERT(!fb_kb_is_own_case("le plu dit quoi sur les friches en général"));
    ASSERT(!fb_kb_is_own_case("on signe le devis avant la subvention ?"));
    ASSERT(!fb_kb_is_own_case("qui signe la vente quand le proprietaire est une sci"));
    /* how much the user's body has; « combien on a droit » asks a rule */
    ASSERT(fb_kb_is_own_case("combien on a de budget pour 2027"));
    ASSERT(fb_kb_is_own_case("combien nous avons en caisse pour la friche"));
    ASSERT(!fb_kb_is_own_case("combien on a droit de DETR ?"));
    /* a forecast of our figures: a money word with « on va », « va nous », « on aura » */
    ASSERT(fb_kb_is_own_case("quel montant de fonds vert on va toucher"));
    ASSERT(fb_kb_is_own_case("a combien l'epf va nous racheter le terrain"));
    ASSERT(!fb_kb_is_own_case("le fonds vert va nous demander une justification ?"));
    ASSERT(!fb_kb_is_own_case("combien rapporte une centrale solaire a la commune"));
    /* more places of ours, and « chez nous » */
    ASSERT(fb_kb_is_own_case("combien rapporterait le parc solaire sur notre ancienne decharge"));
    ASSERT(fb_kb_is_own_case("chez nous a la mairie c'est qui qui s'occupe des friches"));
    ASSERT(!fb_kb_is_own_case("qui s'occupe des friches a la ddt"));
    /* private life: « ma maison », « son voisin », « chez moi » */
    ASSERT(fb_kb_is_own_case("la taxe fonciere de ma maison a augmente pourquoi"));
    ASSERT(fb_kb_is_own_case("le maire peut il refuser un permis a son voisin"));
    ASSERT(fb_kb_is_own_case("permis de construire pour une veranda chez moi"));
    ASSERT(!fb_kb_is_own_case("la maison abandonnee du bourg, on peut la recuperer ?"));
    /* a private person's, first person singular only: « ma taxe », « mes impôts » */
    ASSERT(fb_kb_is_own_case("comment faire baisser ma taxe fonciere"));
    ASSERT(fb_kb_is_own_case("le toit de ma grange est en amiante"));
    ASSERT(!fb_kb_is_own_case("la commune peut-elle majorer sa taxe d'amenagement"));
    ASSERT(!fb_kb_is_own_case("le hangar et sa toiture en amiante, qui peut l'enlever"));
    /* a private house, a private person's taxes, a neighbour dispute */
    ASSERT(fb_kb_is_own_case("je veux construire une maison sur mon terrain, quel permis"));
    ASSERT(fb_kb_is_own_case("faut-il un architecte pour une maison individuelle"));
    ASSERT(!fb_kb_is_own_case("on veut construire une maison de santé sur la friche"));
    ASSERT(fb_kb_is_own_case("un architecte pour construire une maison de 160 m2 ?"));
    ASSERT(!fb_kb_is_own_case("peut-on faire des maisons individuelles sur la friche"));
    ASSERT(!fb_kb_is_own_case("la commune veut rénover une maison abandonnée"));
    ASSERT(fb_kb_is_own_case("exonération de taxe foncière pour un particulier qui rénove"));
    ASSERT(!fb_kb_is_own_case("un particulier peut-il demander le fonds vert"));
    ASSERT(fb_kb_is_own_case("conflit avec le voisin sur une servitude de passage"));
    /* a verdict on people's health */
    ASSERT(fb_kb_is_own_case("de l'amiante dans l'école, les enfants sont en danger ?"));
    ASSERT(!fb_kb_is_own_case("le mur menace de tomber, les passants sont en danger"));
    ASSERT(!fb_kb_is_own_case("des enfants entrent dans la friche, c'est dangereux ?"));
    ASSERT(!fb_kb_is_own_case("les voisins se plaignent des jeunes dans la friche"));
    /* one of our papers; a paper we signed */
    ASSERT(fb_kb_is_own_case("notre bail avec la sci se termine quand"));
    ASSERT(fb_kb_is_own_case("la convention epf qu'on a signee nous oblige a racheter ?"));
    ASSERT(!fb_kb_is_own_case("que contient une convention de portage"));
    ASSERT(fb_kb_is_own_case("on a signe le compromis, on peut se retracter ?"));
    /* a status asked « déjà »; money we did not get, and why */
    ASSERT(fb_kb_is_own_case("est ce que la ddt a deja regarde notre dossier"));
    ASSERT(fb_kb_is_own_case("pourquoi on a pas eu la dsil cette annee"));
    ASSERT(!fb_kb_is_own_case("pourquoi la dsil est elle refusee aux petites communes"));
    ASSERT(!fb_kb_is_own_case("on a obtenu la DETR, on peut la cumuler avec le fonds vert ?"));
    /* one plot by its cadastral reference, unless asked how to find out */
    ASSERT(fb_kb_is_own_case("la parcelle AB 245 est elle en zone constructible"));
    ASSERT(fb_kb_is_own_case("sur la parcelle 0452 section ZC on peut construire ?"));
    ASSERT(!fb_kb_is_own_case("comment on sait qui est proprietaire de la parcelle AB 112"));
    ASSERT(!fb_kb_is_own_case("une parcelle de 5000 m2 en zone U, il faut un permis d'amenager ?"));
    /* a request to act; but asking to pass a message to an advisor is the bot's own service */
    ASSERT(fb_kb_is_own_case("envoyez le dossier a la ddt svp"));
    ASSERT(fb_kb_is_own_case("bonjour, redigez moi la deliberation pour la preemption"));
    ASSERT(fb_kb_is_own_case("pouvez vous contacter le proprietaire pour nous"));
    ASSERT(fb_kb_is_own_case("vous pouvez m'ecrire le courrier ?"));
    ASSERT(!fb_kb_is_own_case("comment contacter le proprietaire"));
    ASSERT(!fb_kb_is_own_case("pouvez vous m'expliquer le portage foncier"));
    ASSERT(!fb_kb_is_own_case("pouvez vous transmettre ma demande a un conseiller"));
    ASSERT(!fb_kb_is_own_case("l'epf peut contacter le proprietaire a notre place ?"));
    ASSERT(!fb_kb_is_own_case("faites vous des etudes de sol ?"));
    ASSERT(!fb_kb_is_own_case("envoyez moi le lien vers cartofriches"));
    ASSERT(!fb_kb_is_own_case("rappelez moi la date limite du fonds vert"));
    /* status words of a filed thing of ours; a forecast with a money verb; our own figure */
    ASSERT(fb_kb_is_own_case("notre dossier est toujours en cours d'instruction ?"));
    ASSERT(fb_kb_is_own_case("des nouvelles de notre candidature ?"));
    ASSERT(fb_kb_is_own_case("la prefecture a repondu a notre demande de subvention ?"));
    ASSERT(!fb_kb_is_own_case("combien de temps dure l'instruction d'une demande de subvention"));
    ASSERT(fb_kb_is_own_case("ca va couter combien de raser le batiment de la poste"));
    ASSERT(fb_kb_is_own_case("notre taux de detr sera de combien"));
    ASSERT(!fb_kb_is_own_case("quel taux de detr pour une friche"));
    ASSERT(!fb_kb_is_own_case("la dsil va financer la demolition ?"));
    /* « pouvez-vous faire le dossier »; a citizen's application */
    ASSERT(fb_kb_is_own_case("pouvez vous faire le dossier a notre place"));
    ASSERT(!fb_kb_is_own_case("pouvez vous faire un point sur les aides"));
    ASSERT(fb_kb_is_own_case("delai d'instruction d'un permis de construire d'un particulier"));
    ASSERT(!fb_kb_is_own_case("un particulier peut il demander le fonds vert"));
    /* a fact about our place; yes or no about its state; a request in the subjunctive */
    ASSERT(fb_kb_is_own_case("quelle est la population de notre commune"));
    ASSERT(!fb_kb_is_own_case("notre commune compte 300 habitants, on a droit a la detr ?"));
    ASSERT(fb_kb_is_own_case("notre friche est elle dans cartofriches ?"));
    ASSERT(fb_kb_is_own_case("notre terrain est il pollue"));
    ASSERT(!fb_kb_is_own_case("notre commune est elle eligible a la detr"));
    ASSERT(!fb_kb_is_own_case("notre terrain est il constructible, comment savoir"));
    ASSERT(!fb_kb_is_own_case("notre terrain est en zone inondable, on peut construire ?"));
    ASSERT(fb_kb_is_own_case("je veux que vous appeliez la ddt pour moi"));
    ASSERT(!fb_kb_is_own_case("que vous faut il pour le dossier"));
    /* a decision on a thing of ours after an auxiliary; a paper a body sent us */
    ASSERT(fb_kb_is_own_case("est ce que la region a valide notre plan de financement"));
    ASSERT(fb_kb_is_own_case("la ddt a deja instruit notre dossier ?"));
    ASSERT(!fb_kb_is_own_case("la region a valide le principe des aides aux friches ?"));
    ASSERT(fb_kb_is_own_case("le notaire nous a envoye l'acte, il y a une erreur, que faire"));
    ASSERT(!fb_kb_is_own_case("le notaire nous a envoye une DIA, on a combien de temps"));
    /* the spoken status (« il en est où »); a slip of ours (« on a raté la date ») */
    ASSERT(fb_kb_is_own_case("le dossier qu'on a depose en mars il en est ou ?"));
    ASSERT(fb_kb_is_own_case("la demande de subvention ca en est ou"));
    ASSERT(!fb_kb_is_own_case("comment on en sort quand le proprietaire refuse"));
    ASSERT(fb_kb_is_own_case("on a rate la date limite, on peut encore deposer ?"));
    ASSERT(fb_kb_is_own_case("j'ai oublie de demander l'avis du domaine, c'est grave ?"));
    ASSERT(!fb_kb_is_own_case("que se passe t il si on rate la date limite du fonds vert"));
    /* « dans la commune » is ours, as « notre commune »; « à la commune » names a body */
    ASSERT(fb_kb_is_own_case("combien de logements sociaux on doit construire dans la commune"));
    ASSERT(fb_kb_is_own_case("ca coute combien une demolition sur la commune"));
    ASSERT(!fb_kb_is_own_case("on a pas de plu dans la commune, c quoi les regles"));
    ASSERT(!fb_kb_is_own_case(""));
    ASSERT(!fb_kb_is_own_case(NULL));
    /* in the search: a question the base would answer is not answered when it is the user's own
     * case, and the result says why */
    fb_kb_t *kb = small_kb();
    fb_kb_result_t r;
    fb_kb_search(kb, "Qui paye la dépollution ?", &r);
    ASSERT(r.confident);
    ASSERT(!r.own_case);
    fb_kb_search(kb, "Qui paye la dépollution de notre site et combien ?", &r);
    ASSERT(r.n >= 1);
    ASSERT_EQ(r.hits[0].doc, 2);
    ASSERT(r.own_case);
    ASSERT(!r.confident);
    fb_kb_free(kb);
    return 0;
}

TEST_IMPL(kb_off_topic)
{
    /* other town-hall business, by phrase, whole words */
    ASSERT(fb_kb_is_off_topic("comment faire une demande de logement social"));
    ASSERT(fb_kb_is_off_topic("comment louer la salle des fetes"));
    ASSERT(fb_kb_is_off_topic("horaires de l'état civil"));
    ASSERT(!fb_kb_is_off_topic("faire une salle des fetes dans l'ancienne usine"));
    ASSERT(!fb_kb_is_off_topic("du logement social sur la friche"));
    ASSERT(!fb_kb_is_off_topic("la cantineuse"));
    ASSERT(fb_kb_is_off_topic("indemnites des elus quel montant"));
    ASSERT(fb_kb_is_off_topic("le budget primitif doit etre vote quand"));
    ASSERT(fb_kb_is_off_topic("j'ai perdu mon mot de passe de Démarches simplifiées"));
    ASSERT(fb_kb_is_off_topic("le maire est absent cette semaine, qui signe l'acte ?"));
    ASSERT(!fb_kb_is_off_topic("le maire peut-il signer l'acte de vente lui-même ?"));
    /* other subjects in the base's words (sixth round): a farmed friche, air and water,
     * a private person's taxes, neighbours, statistics */
    ASSERT(fb_kb_is_off_topic("la commune peut-elle faire remettre en culture un champ en friche"));
    ASSERT(fb_kb_is_off_topic("autorisation de défrichement pour un bois"));
    ASSERT(fb_kb_is_off_topic("pollution de l'air à cause de l'usine"));
    ASSERT(fb_kb_is_off_topic("les frais de notaire pour une maison"));
    ASSERT(fb_kb_is_off_topic("un litige entre deux voisins"));
    ASSERT(fb_kb_is_off_topic("combien de communes ont eu le fonds vert en 2024"));
    ASSERT(!fb_kb_is_off_topic("la pollution de la friche"));
    ASSERT(fb_kb_is_off_topic("quel pourcentage des friches sont polluées ?"));
    ASSERT(!fb_kb_is_off_topic("combien d'habitants au plus pour la DETR"));
    ASSERT(!fb_kb_is_off_topic("combien de temps pour les friches"));
    ASSERT(!fb_kb_is_off_topic("fixer dans le PLU le nombre de logements"));
    ASSERT(fb_kb_is_off_topic("quel est le budget exact du fonds vert pour 2027"));
    ASSERT(fb_kb_is_off_topic("ça coûte combien exactement"));
    ASSERT(!fb_kb_is_off_topic("c'est quoi exactement l'avis du Domaine"));
    ASSERT(!fb_kb_is_off_topic("quel budget pour une démolition"));
    ASSERT(fb_kb_is_off_topic("tu votes pour qui ?"));
    ASSERT(fb_kb_is_off_topic("la secrétaire peut signer à la place du maire ?"));
    ASSERT(fb_kb_is_off_topic("les frais d'agence c'est pour l'acheteur ?"));
    ASSERT(!fb_kb_is_off_topic("un notaire pour la vente"));
    ASSERT(!fb_kb_is_off_topic(NULL));
    {
        fb_kb_t *kb = fb_kb_new();
        const char *q[] = {"logement social sur une friche", "faire des logements"};
        (void)fb_kb_add_doc(kb, q, 2, NULL, 0, "Du logement social sur une friche.");
        (void)fb_kb_build(kb);
        fb_kb_result_t r;
        fb_kb_search(kb, "logement social sur une friche ?", &r);
        ASSERT(r.confident);
        ASSERT(!r.off_topic);
        fb_kb_search(kb, "demande de logement social", &r);
        ASSERT(r.off_topic);
        ASSERT(!r.confident);
        fb_kb_free(kb);
    }
    return 0;
}

TEST_IMPL(kb_other_scheme)
{
    /* a funder the question names that the top answer is not about, while it is about others;
     * an amount asked of an answer that gives none (docs/internals/KB.md) */
    fb_kb_t *kb = fb_kb_new();
    const char *g[] = {"fonds vert", "recyclage foncier"};
    fb_kb_add_synonyms(kb, g, 2);
    const char *q0[] = {"date limite du fonds vert", "appel a projets recyclage foncier date"};
    const char *m0[] = {"fonds vert", "date limite"};
    const char *q1[] = {"la region aide les friches ?", "aide regionale"};
    const char *m1[] = {"region"};
    const char *q2[] = {"c'est quoi une etude historique", "etude historique du site"};
    const char *q3[] = {"combien coute une demolition", "prix de la demolition"};
    ASSERT_EQ(fb_kb_add_doc(kb, q0, 2, m0, 2, "Le calendrier du fonds vert."), 0);
    ASSERT_EQ(fb_kb_add_doc(kb, q1, 2, m1, 1, "La Region a des aides."), 1);
    ASSERT_EQ(fb_kb_add_doc(kb, q2, 2, NULL, 0, "L'histoire du site."), 2);
    ASSERT_EQ(fb_kb_add_doc(kb, q3, 2, NULL, 0, "Le cout depend du site."), 3);
    ASSERT_OK(fb_kb_build(kb));
    fb_kb_result_t r;
    fb_kb_search(kb, "date limite du fonds vert ?", &r);
    ASSERT_EQ(r.hits[0].doc, 0);
    ASSERT(r.confident);
    ASSERT(!r.other_scheme);
    /* the Region's own call for projects: not the Fonds vert's calendar */
    fb_kb_search(kb, "date limite de l'appel a projets de la region", &r);
    ASSERT_EQ(r.hits[0].doc, 0);
    ASSERT(r.other_scheme);
    ASSERT(!r.confident);
    /* both named: the Fonds vert's calendar in a region */
    fb_kb_search(kb, "date limite du recyclage foncier dans la region", &r);
    ASSERT_EQ(r.hits[0].doc, 0);
    ASSERT(!r.other_scheme);
    /* an answer about no funder answers no question about one */
    fb_kb_search(kb, "etude historique du site pour la region", &r);
    ASSERT_EQ(r.hits[0].doc, 2);
    ASSERT(r.other_scheme);
    ASSERT(!r.confident);
    /* a question that names no funder: the rule does not apply */
    fb_kb_search(kb, "etude historique du site", &r);
    ASSERT_EQ(r.hits[0].doc, 2);
    ASSERT(!r.other_scheme);
    ASSERT(r.confident);
    /* an amount: only from an answer that asks one */
    fb_kb_search(kb, "combien coute une etude historique du site", &r);
    ASSERT_EQ(r.hits[0].doc, 2);
    ASSERT(r.no_amount);
    ASSERT(!r.confident);
    fb_kb_search(kb, "combien coute une demolition ?", &r);
    ASSERT_EQ(r.hits[0].doc, 3);
    ASSERT(!r.no_amount);
    ASSERT(r.confident);
    /* « coût » without « combien » asks no amount */
    fb_kb_search(kb, "le cout de l'etude historique du site", &r);
    ASSERT_EQ(r.hits[0].doc, 2);
    ASSERT(!r.no_amount);
    fb_kb_free(kb);
    return 0;
}

TEST_IMPL(kb_question_sentence)
{
    /* in a message of several sentences, the terms of the sentence that asks count twice */
    fb_kb_t *kb = fb_kb_new();
    const char *q0[] = {"faire des logements et un parc dans une ancienne scierie",
                        "logements parc scierie"};
    const char *q1[] = {"l'EPF peut acheter le terrain ?", "EPF achat"};
    ASSERT_EQ(fb_kb_add_doc(kb, q0, 2, NULL, 0, "Des logements et un parc."), 0);
    ASSERT_EQ(fb_kb_add_doc(kb, q1, 2, NULL, 0, "L'EPF achete."), 1);
    ASSERT_OK(fb_kb_build(kb));
    fb_kb_result_t one, two;
    /* one sentence: the context's three terms outweigh the question's two */
    fb_kb_search(kb, "une ancienne scierie, des logements et un parc, l'EPF peut acheter", &one);
    ASSERT_EQ(one.hits[0].doc, 0);
    /* the same words, the question a sentence of its own, then a closing formula */
    fb_kb_search(kb, "Une ancienne scierie, des logements et un parc. L'EPF peut acheter ? Merci",
                 &two);
    ASSERT_EQ(two.hits[0].doc, 1);
    fb_kb_free(kb);
    return 0;
}

TEST_IMPL(kb_typos_and_sms)
{
    /* SMS spellings of stop words and common words, without a base */
    check_same_terms(NULL, "koman on fe", "comment on fait");
    check_same_terms(NULL, "ki paye", "qui paye");
    check_terms(NULL, "c koi le zan", "zan");
    check_terms(NULL, "jai un pb", "problem");
    /* phrases: « jusqu'à quand » asks a deadline, fillers say nothing (whole words only) */
    check_same_terms(NULL, "jusqu'à quand déposer", "date limite déposer");
    check_same_terms(NULL, "jusqua quand deposer", "date limite deposer");
    check_same_terms(NULL, "en fait c'est quoi le zan exactement", "zan");
    check_same_terms(NULL, "du coup le zan en gros", "zan");
    check_terms(NULL, "le coup de la friche", "coup frich");
    check_terms(NULL, "gros en faits", "gros fait");
    check_terms(NULL, "qui es-tu ?", "bot");
    check_terms(NULL, "t'es qui toi en fait", "bot");
    /* a letter's formulas, the writer introducing themselves, spoken fillers and modal verbs */
    check_same_terms(NULL,
                     "Madame, Monsieur, je suis secrétaire de mairie : c'est quoi le zan ? "
                     "Merci d'avance, cordialement",
                     "zan");
    check_same_terms(NULL, "bonjour à tous, je suis le maire, et après le zan ?", "zan");
    check_same_terms(NULL, "on voudrait juste savoir le zan maintenant", "savoir zan");
    check_same_terms(NULL, "nous souhaitons savoir le zan, on aimerait", "savoir zan");
    check_terms(NULL, "le maire avance les frais", "mair avanc frais");
    check_terms(NULL, "rien, ça marche pas", "");
    check_terms(NULL, "une étude de marché", "etud march");
    /* unless the base uses the word itself: « DS » is Démarches simplifiées there */
    check_terms(NULL, "ds le dossier", "dossi");
    {
        fb_kb_t *ds = fb_kb_new();
        const char *g[] = {"démarches simplifiées", "DS"};
        fb_kb_add_synonyms(ds, g, 2);
        const char *q[] = {"déposer sur démarches simplifiées", "le dépôt en ligne"};
        ASSERT_EQ(fb_kb_add_doc(ds, q, 2, NULL, 0, "En ligne."), 0);
        ASSERT_OK(fb_kb_build(ds));
        check_same_terms(ds, "dépôt sur ds", "dépôt sur démarches simplifiées");
        fb_kb_free(ds);
    }
    /* typos of the base's words: a letter missing or two swapped from 5 letters, one too many or
     * wrong from 9 */
    fb_kb_t *kb = small_kb();
    check_same_terms(kb, "depolution", "dépollution");
    check_same_terms(kb, "qui paye la depolution", "qui paye la dépollution");
    check_same_terms(kb, "subvantion", "subvention");
    check_same_terms(kb, "subventiion", "subvention");
    check_same_terms(kb, "subvnetion", "subvention");
    check_same_terms(kb, "délibératoin", "délibération");
    /* two letters swapped, from 5 letters */
    check_same_terms(kb, "qui paye le pollueru", "qui paye le pollueur");
    check_same_terms(kb, "cessoin", "cession");
    check_terms(kb, "cseion", "cseion"); /* two edits: no */
    /* a short word at one wrong letter from a base word is another word, not a typo */
    check_terms(kb, "terrine", "terrin");
    check_terms(kb, "vende", "vend");
    char *a = terms(kb, "payes"), *b = terms(kb, "pailles");
    ASSERT(strcmp(a, b) != 0);
    fb_free(a);
    fb_free(b);
    /* and a typo makes the question answerable: found, and asked about since the guesses carry
     * it (a sure norm, under FB_KB_ANSWER_NORM once they count half) */
    fb_kb_result_t r;
    fb_kb_search(kb, "ki paye la depolution", &r);
    ASSERT_EQ(r.hits[0].doc, 2);
    ASSERT(r.norm >= FB_KB_ANSWER_NORM);
    ASSERT(r.guessed);
    ASSERT(!r.confident);
    ASSERT_EQ(r.n_proposals, 1);
    fb_kb_free(kb);
    return 0;
}

TEST_IMPL(kb_guessed)
{
    /* a term guessed from a typo is half a word in the confidence: the answer that only a guess
     * brings over the thresholds is not sure (« le plan avenir montagnes ça finance quoi » went
     * to the help with the funding « montage » at norm 0.30), one the real words carry still is */
    fb_kb_t *kb = fb_kb_new();
    const char *q0[] = {"aide au montage du dossier", "les montages financiers"};
    const char *q1[] = {"comment vendre un terrain communal", "cession d'un terrain"};
    const char *q2[] = {"qui paye la dépollution", "le pollueur doit il payer"};
    const char *q3[] = {"un plan de financement", "le plan de gestion"};
    ASSERT_EQ(fb_kb_add_doc(kb, q0, 2, NULL, 0, "Des services aident à monter le dossier."), 0);
    ASSERT_EQ(fb_kb_add_doc(kb, q1, 2, NULL, 0, "Une délibération du conseil municipal."), 1);
    ASSERT_EQ(fb_kb_add_doc(kb, q2, 2, NULL, 0, "Le dernier exploitant paie."), 2);
    ASSERT_EQ(fb_kb_add_doc(kb, q3, 2, NULL, 0, "Le plan dit qui paie quoi."), 3);
    ASSERT_OK(fb_kb_build(kb));
    fb_kb_result_t real, guess;
    fb_kb_search(kb, "les montages du dossier communal", &real);
    fb_kb_search(kb, "les montagnes du dossier communal", &guess);
    ASSERT(real.norm - guess.norm < 1e-9 && guess.norm - real.norm < 1e-9); /* the guess decides */
    ASSERT_EQ(real.hits[0].doc, 0);
    ASSERT_EQ(guess.hits[0].doc, 0);
    /* under FB_KB_ANSWER_NORM both are unsure: the real words are asked about, the guess falls
     * under FB_KB_MIN_NORM once counted half and is not */
    ASSERT(real.norm < FB_KB_ANSWER_NORM);
    ASSERT(!real.confident);
    ASSERT_EQ(real.n_proposals, 1);
    ASSERT(!guess.confident);
    ASSERT_EQ(guess.n_proposals, 0);
    /* a typo on a well covered question changes nothing: the same outcome as its right spelling */
    fb_kb_search(kb, "qui paye la dépollution", &real);
    fb_kb_search(kb, "qui paye la depolution", &guess);
    ASSERT_EQ(guess.hits[0].doc, 2);
    ASSERT(!guess.guessed);
    ASSERT(guess.norm >= FB_KB_MIN_NORM);
    ASSERT_EQ(guess.confident, real.confident);
    ASSERT_EQ(guess.n_proposals, real.n_proposals);
    fb_kb_free(kb);
    return 0;
}

TEST_IMPL(kb_named_place)
{
    /* an amount or a name for a place the base never names is one commune's case (« le taux de
     * la taxe d'aménagement à Lyon »); the same question without the place, or with a place
     * word of the base, asks a rule */
    fb_kb_t *kb = small_kb();
    fb_kb_result_t r;
    fb_kb_search(kb, "combien coûte la cession d'un terrain à Brive", &r);
    ASSERT(r.own_case);
    ASSERT(!r.confident);
    fb_kb_search(kb, "le prix d'un terrain pour Tulle", &r);
    ASSERT(r.own_case);
    fb_kb_search(kb, "le nom du pollueur de Jarrie", &r);
    ASSERT(r.own_case);
    fb_kb_search(kb, "combien coûte la cession d'un terrain communal", &r);
    ASSERT(!r.own_case);
    fb_kb_search(kb, "combien coûte la cession d'un terrain en 2026", &r);
    ASSERT(!r.own_case);
    fb_kb_search(kb, "combien coûte la cession d'un terrain pollué", &r);
    ASSERT(!r.own_case);
    fb_kb_search(kb, "qui paye la dépollution à Brive", &r); /* no amount, no name: a rule */
    ASSERT(!r.own_case);
    /* without a base, no word is known or unknown: the shape is off */
    ASSERT(!fb_kb_is_own_case("combien coûte la cession d'un terrain à Brive"));
    fb_kb_free(kb);
    return 0;
}

TEST_IMPL(kb_named_area)
{
    /* a département or a région named after a preposition of place, from the official index:
     * one place's figure even when the name is a word of the base (« cher ») */
    fb_kb_t *kb = fb_kb_new();
    const char *q0[] = {"Combien coûte un terrain ?", "le terrain c'est cher ?"};
    ASSERT_EQ(fb_kb_add_doc(kb, q0, 2, NULL, 0, "Le prix d'un terrain dépend du marché local."), 0);
    const char *q1[] = {"Faut-il une délibération du conseil ?"}; /* « conseil », a word it knows */
    ASSERT_EQ(
        fb_kb_add_doc(kb, q1, 1, NULL, 0,
                      "Oui, en réunion du conseil municipal, lot par lot, au nord comme au sud."),
        1);
    ASSERT_OK(fb_kb_build(kb));
    fb_kb_result_t r;
    fb_kb_search(kb, "le prix du terrain dans le Cher", &r);
    ASSERT(!r.own_case); /* no index: « cher » is a word of the base */
    fb_buf_t errors;
    fb_buf_init(&errors, 4096);
    fb_geo_t *geo = fb_geo_load(FB_BINARY_DIR "/data/communes.fbgeo", &errors);
    if (!geo)
        FB_TEST_FAIL("fb_geo_load: %s", fb_buf_str(&errors));
    fb_buf_free(&errors);
    fb_kb_set_geo(kb, geo);
    const char *own[] = {"le prix du terrain dans le Cher",
                         "combien coûte un terrain en Haute-Savoie",
                         "le prix du m2 dans le 93",
                         "combien coûte un terrain dans la Manche",
                         "le prix d'un terrain dans la Somme",
                         "combien coûte un terrain en Provence-Alpes-Côte d'Azur",
                         "le prix d'un terrain dans les Alpes-de-Haute-Provence",
                         "le prix d'un terrain en Bretagne c'est combien"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(own); i++) {
        fb_kb_search(kb, own[i], &r);
        if (!r.own_case || r.confident)
            FB_TEST_FAIL("« %s » should be one place's case", own[i]);
    }
    const char *rule[] = {"le terrain c'est cher ?",
                          "combien coûte un terrain",
                          "combien coûte un terrain en 2026",
                          "le prix du terrain c'est cher pour la commune ?",
                          "le prix du terrain pour la somme des travaux",
                          "combien coûte un terrain à la réunion du conseil",
                          "le prix du lot",
                          "combien coûte un terrain, en somme ?",
                          "le prix du terrain au nord de la ville"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(rule); i++) {
        fb_kb_search(kb, rule[i], &r);
        if (r.own_case)
            FB_TEST_FAIL("« %s » asks a rule", rule[i]);
    }
    fb_kb_free(kb);
    fb_geo_free(geo);
    return 0;
}

TEST_IMPL(kb_named_kind)
{
    /* « la loi X », « le programme X », « le cabinet X »: one named thing; an answer that does
     * not hold its name does not answer it (« la loi Trace change quoi pour le ZAN » went to the
     * ZAN answer at 0.49), whether the base knows the name's word or not */
    fb_kb_t *kb = fb_kb_new();
    const char *q0[] = {"la loi littoral et le solaire", "commune littorale panneaux solaires"};
    const char *q1[] = {"les zones de montagne", "une friche en montagne"};
    const char *q2[] = {"qui paye la dépollution", "le pollueur doit il payer"};
    ASSERT_EQ(fb_kb_add_doc(kb, q0, 2, NULL, 0, "La loi Littoral limite le solaire."), 0);
    ASSERT_EQ(fb_kb_add_doc(kb, q1, 2, NULL, 0, "En montagne, des règles propres."), 1);
    ASSERT_EQ(fb_kb_add_doc(kb, q2, 2, NULL, 0, "Le dernier exploitant paie."), 2);
    ASSERT_OK(fb_kb_build(kb));
    fb_kb_result_t r;
    fb_kb_search(kb, "la loi littoral et le solaire", &r);
    ASSERT_EQ(r.hits[0].doc, 0);
    ASSERT(!r.unnamed);
    ASSERT(r.confident);
    fb_kb_search(kb, "la loi montagne et les panneaux solaires", &r); /* a word of the base */
    ASSERT_EQ(r.hits[0].doc, 0);
    ASSERT(r.norm >= FB_KB_MIN_NORM); /* asked about, by the score alone */
    ASSERT(r.unnamed);
    ASSERT(!r.confident);
    ASSERT_EQ(r.n_proposals, 0);
    fb_kb_search(kb, "la loi zorglub et les panneaux solaires", &r); /* a word it never uses */
    ASSERT(r.unnamed);
    ASSERT(!r.confident);
    fb_kb_search(kb, "la loi de 2015 et les panneaux solaires", &r); /* a number: no name */
    ASSERT(!r.unnamed);
    fb_kb_free(kb);
    return 0;
}

TEST_IMPL(kb_numbers)
{
    /* a number the base never uses is a detail of the user's case: it does not lower the norm
     * as an unknown word does */
    fb_kb_t *kb = small_kb();
    fb_kb_result_t plain, numbers, unknown;
    fb_kb_search(kb, "qui paye la dépollution", &plain);
    fb_kb_search(kb, "qui paye la dépollution de 1987, 4500 ?", &numbers);
    fb_kb_search(kb, "qui paye la dépollution de zorglub ?", &unknown);
    ASSERT_EQ(numbers.hits[0].doc, 2);
    ASSERT(numbers.confident);
    ASSERT(numbers.norm > unknown.norm);
    ASSERT(numbers.norm >= plain.norm - 1e-9);
    ASSERT(unknown.norm < plain.norm);
    fb_kb_free(kb);
    return 0;
}

TEST_IMPL(kb_small_talk)
{
    static const char *const yes[] = {
        "merci beaucoup",
        "Merci pour votre aide, bonne journée !",
        "bonjour",
        "au revoir",
        "ok super merci",
        "ça marche, à plus",
        "bonsoir, vous allez bien ?",
        "t'es nul",
        "haha",
        "tu es sympa",
        "je teste le bot",
        "test",
        "c'est un essai",
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(yes); i++) {
        if (!fb_kb_is_small_talk(yes[i]))
            fprintf(stderr, "not small talk: %s\n", yes[i]);
        ASSERT(fb_kb_is_small_talk(yes[i]));
    }
    static const char *const no[] = {
        "merci, et c'est quoi un SIS ?",
        "bonjour, qui paye la dépollution ?",
        "je veux parler à un conseiller",
        "au revoir le PLU, bonjour le PLUi ?",
        "le marché est-il porteur ?",
        "",
        "le la les ?",
        "c'est quoi ce bot ?",
        "merci le bot",
        "test de sol obligatoire ?",
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(no); i++) {
        if (fb_kb_is_small_talk(no[i]))
            fprintf(stderr, "small talk: %s\n", no[i]);
        ASSERT(!fb_kb_is_small_talk(no[i]));
    }
    ASSERT(!fb_kb_is_small_talk(NULL));
    /* in the search: a word of thanks that meets an answer's word is not answered */
    fb_kb_t *kb = fb_kb_new();
    const char *d0[] = {"le marché immobilier est-il porteur ?", "étude de marché"};
    const char *d1[] = {"qui paye la dépollution ?", "pollueur payeur"};
    ASSERT_EQ(fb_kb_add_doc(kb, d0, 2, NULL, 0, "Vérifiez le marché."), 0);
    ASSERT_EQ(fb_kb_add_doc(kb, d1, 2, NULL, 0, "Le pollueur paie."), 1);
    ASSERT_OK(fb_kb_build(kb));
    fb_kb_result_t r;
    fb_kb_search(kb, "ça marche, merci !", &r);
    ASSERT(r.n >= 1);
    ASSERT_EQ(r.hits[0].doc, 0);
    ASSERT(r.small_talk);
    ASSERT(!r.confident);
    fb_kb_search(kb, "le marché, il est porteur ?", &r);
    ASSERT(!r.small_talk);
    ASSERT_EQ(r.hits[0].doc, 0);
    ASSERT(!r.confident); /* half covered (norm 0.54): asked about, alone */
    ASSERT_EQ(r.n_proposals, 1);
    fb_kb_free(kb);
    return 0;
}

TEST_IMPL(kb_question_detection)
{
    static const char *const yes[] = {
        "Comment obtenir le fonds vert pour une friche ?",
        "c'est quoi un SIS",
        "cest quoi le zan",
        "qu'est-ce qu'une friche",
        "qui paye la dépollution si l'exploitant a disparu",
        "l'EPF peut acheter à notre place ?",
        "faut-il l'avis du Domaine",
        "est-ce que la DETR finance les études",
        "peut-on démolir sans permis",
        "quelle aide pour une commune rurale",
        "Quels financements",
        "combien de temps dure une DUP",
        "pourquoi faire un diagnostic",
        "quand demander l'avis du domaine",
        "je voudrais savoir comment marche le portage",
        "que faire d'un bien sans maître",
        "Où trouver la carte des friches",
        "le terrain est pollué ?  ",
        "vraiment ?!",
    };
    static const char *const no[] = {
        "Grenoble",
        "38000",
        "oui",
        "non",
        "je ne sais pas",
        "que des commerces",
        "2 hectares",
        "industriel",
        "Quimper",
        "une ancienne usine de textile",
        "",
        "conseiller",
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(yes); i++)
        if (!fb_text_is_question(yes[i]))
            FB_TEST_FAIL("not taken for a question: « %s »", yes[i]);
    for (size_t i = 0; i < FB_ARRAY_SIZE(no); i++)
        if (fb_text_is_question(no[i]))
            FB_TEST_FAIL("taken for a question: « %s »", no[i]);
    /* a final "?" alone is no interrogative form: « Grenoble ? » may be an answer */
    ASSERT(fb_text_is_question("Grenoble ?"));
    ASSERT(!fb_text_has_question_form("Grenoble ?"));
    ASSERT(fb_text_has_question_form("comment on fait"));
    /* inside the message, on word boundaries only (the one-pass scan of text_question.c) */
    ASSERT(fb_text_has_question_form("dites-moi comment faire"));
    ASSERT(fb_text_has_question_form("le terrain fait combien"));
    ASSERT(fb_text_has_question_form("Bonjour, je me demande si c'est possible"));
    ASSERT(fb_text_has_question_form("et alors, c'est quoi un PLUi"));
    ASSERT(!fb_text_has_question_form("recommenter le dossier"));
    ASSERT(!fb_text_has_question_form("les combienistes du coin"));
    ASSERT(!fb_text_has_question_form("quelques hangars"));
    ASSERT(fb_text_ends_with_question_mark("ah bon ? "));
    ASSERT(!fb_text_ends_with_question_mark("ah bon"));
    ASSERT(!fb_text_is_question(NULL));
    return 0;
}

TEST_IMPL(kb_loader)
{
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 16);
    fb_dialog_t *d = fb_dialog_load(DATA "/petit.yaml", NULL, &errors);
    ASSERT_NOT_NULL(d);
    ASSERT_NULL(fb_dialog_kb(d)); /* no `connaissances`: no base, loads as before */
    fb_dialog_unref(d);
    /* the test base needs the communes index for its dialog: check it with a copy that asks no
     * commune, loaded from memory next to the real files */
    static const char text[] = "dialogue: kbmini\n"
                               "debut: q\n"
                               "connaissances:\n"
                               "  - connaissances/test.yaml\n"
                               "  - connaissances/test2.yaml\n"
                               "etats:\n"
                               "  commune:\n"
                               "    question: \"Surface ?\"\n"
                               "    type: nombre\n"
                               "    suite: fin\n"
                               "  q:\n"
                               "    dire: \"Bonjour\"\n"
                               "    suite: commune\n"
                               "  fin:\n"
                               "    dire: \"Fin\"\n"
                               "    fin: true\n";
    d = fb_dialog_load_text("kbmini.yaml", DATA, text, strlen(text), NULL, &errors);
    /* test2.yaml's variant reads commune.population: `commune` is a slot here too (a number),
     * so the names check passes and the base loads */
    if (!d)
        FB_TEST_FAIL("does not load:\n%s", fb_buf_str(&errors));
    const fb_kb_t *kb = fb_dialog_kb(d);
    ASSERT_NOT_NULL(kb);
    ASSERT_EQ(fb_kb_size(kb), 6);
    ASSERT_STR_EQ(fb_dialog_kb_id(d, 0), "sis_definition");
    ASSERT_EQ(fb_dialog_kb_index(d, "avis_domaine"), 5);
    ASSERT_EQ(fb_dialog_kb_index(d, "nope"), -1);
    fb_kb_result_t r;
    fb_kb_search(kb, "l'EPF peut acheter le terrain pour nous ?", &r);
    ASSERT(r.confident);
    ASSERT_STR_EQ(fb_dialog_kb_id(d, r.hits[0].doc), "epf_achat");
    /* the test base has no competing answers */
    fb_buf_t w;
    fb_buf_init(&w, 1u << 16);
    ASSERT_EQ(fb_dialog_kb_warnings(d, &w), 0);
    fb_buf_free(&w);
    fb_dialog_unref(d);
    /* a broken declaration: file:line errors */
    static const char bad[] = "dialogue: kbbad\n"
                              "debut: fin\n"
                              "connaissances: connaissances/test.yaml\n"
                              "etats:\n"
                              "  fin:\n"
                              "    dire: \"Fin\"\n"
                              "    fin: true\n";
    fb_buf_reset(&errors);
    d = fb_dialog_load_text("kbbad.yaml", DATA, bad, strlen(bad), NULL, &errors);
    ASSERT_NULL(d);
    ASSERT_NOT_NULL(strstr(fb_buf_str(&errors), "kbbad.yaml:3:16: « connaissances » doit être une "
                                                "liste de fichiers"));
    fb_buf_free(&errors);
    return 0;
}

/* ---- in the conversation ---- */

struct kconv {
    fb_dialog_t *d;
    fb_engine_env_t env;
    json_t *session, *effects;
};

/* Steps `ev` from session `from`: its effects replace the last step's; returns the new session
 * (the caller's). */
static json_t *kstep_from(struct kconv *c, const json_t *from, const fb_event_t *ev)
{
    json_t *ns = NULL, *ef = NULL;
    ASSERT_OK(fb_engine_step(c->d, from, ev, &c->env, &ns, &ef));
    json_decref(c->effects);
    c->effects = ef;
    return ns;
}

static void kstep(struct kconv *c, const char *text)
{
    fb_event_t ev = {FB_EVENT_MESSAGE, text, NULL, NULL};
    json_t *ns = kstep_from(c, c->session, &ev);
    json_decref(c->session);
    c->session = ns;
}

/* The number of `stat` effects named `name` in the last step. */
static int stat_count(const struct kconv *c, const char *name)
{
    int n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(c->effects, i, e)
    {
        const char *s = json_string_value(json_object_get(e, "name"));
        if (s && strcmp(json_string_value(json_object_get(e, "type")), "stat") == 0 &&
            strcmp(s, name) == 0)
            n++;
    }
    return n;
}

/* The last `say` text of the last step. */
static const char *last_said(const struct kconv *c)
{
    const char *t = NULL;
    size_t i;
    json_t *e;
    json_array_foreach(c->effects, i,
                       e) if (strcmp(json_string_value(json_object_get(e, "type")), "say") == 0) t =
        json_string_value(json_object_get(e, "text"));
    return t ? t : "";
}

/* A conversation on a one-question dialog (a number, two failures escalate) with the test
 * base. */
static void kconv_open(struct kconv *c)
{
    static const char text[] = "dialogue: kbconv\n"
                               "debut: surface\n"
                               "connaissances: [connaissances/test.yaml]\n"
                               "etats:\n"
                               "  surface:\n"
                               "    question: \"Quelle est la surface du site ?\"\n"
                               "    type: nombre\n"
                               "    echecs: {max: 2, action: conseiller}\n"
                               "    suite: fin\n"
                               "  fin:\n"
                               "    dire: \"Fin\"\n"
                               "    fin: true\n";
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 16);
    c->d = fb_dialog_load_text("kbconv.yaml", DATA, text, strlen(text), NULL, &errors);
    if (!c->d)
        FB_TEST_FAIL("does not load:\n%s", fb_buf_str(&errors));
    fb_buf_free(&errors);
    c->env.now = 1795856400;
    c->env.locale = "fr";
}

/* The answers offered when the bot is unsure (session `i`) wait for the next message only: a
 * number picks one (answered, the offer gone), « autre chose » declines (unanswered), any other
 * message drops the offer and is read as usual; an offer of another version (an unknown id) is
 * nothing pending, and more answers than the bot ever offers is not a session it wrote. */
TEST_IMPL(kb_offer_session)
{
    struct kconv c = {0};
    kconv_open(&c);
    kstep(&c, "bonjour");
    json_t *start = json_deep_copy(c.session);
    /* « 2 » picks the second answer offered */
    json_object_set_new(c.session, "i", json_pack("[s,s]", "sis_definition", "casias_definition"));
    kstep(&c, "2");
    ASSERT_EQ(stat_count(&c, "kb_answered"), 1);
    ASSERT_NULL(json_object_get(c.session, "i"));
    ASSERT_STR_EQ(last_said(&c), "Quelle est la surface du site ?");
    ASSERT_STR_EQ(json_string_value(json_object_get(c.session, "s")), "surface");
    /* « autre chose »: not answered, who can answer said */
    json_decref(c.session);
    c.session = json_deep_copy(start);
    json_object_set_new(c.session, "i", json_pack("[s,s]", "sis_definition", "casias_definition"));
    kstep(&c, "autre chose");
    ASSERT_EQ(stat_count(&c, "kb_unanswered"), 1);
    ASSERT_EQ(stat_count(&c, "kb_answered"), 0);
    ASSERT_NULL(json_object_get(c.session, "i"));
    /* something else: the offer is dropped (counted unanswered), the message read as usual */
    json_decref(c.session);
    c.session = json_deep_copy(start);
    json_object_set_new(c.session, "i", json_pack("[s,s]", "sis_definition", "casias_definition"));
    kstep(&c, "1200");
    ASSERT_EQ(stat_count(&c, "kb_unanswered"), 1);
    ASSERT_NULL(json_object_get(c.session, "i"));
    ASSERT_STR_EQ(json_string_value(json_object_get(c.session, "s")), "fin");
    /* an answer this version's base does not have: nothing pending, « 2 » is the surface */
    json_decref(c.session);
    c.session = json_deep_copy(start);
    json_object_set_new(c.session, "i", json_pack("[s,s]", "sis_definition", "retiree"));
    kstep(&c, "2");
    ASSERT_EQ(stat_count(&c, "kb_answered"), 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(c.session, "s")), "fin");
    /* four answers: never written by the bot */
    json_decref(c.session);
    c.session = json_deep_copy(start);
    json_object_set_new(c.session, "i",
                        json_pack("[s,s,s,s]", "sis_definition", "casias_definition",
                                  "depollution_payeur", "sis_definition"));
    fb_event_t ev = {FB_EVENT_MESSAGE, "1", NULL, NULL};
    json_t *ns = NULL, *ef = NULL;
    ASSERT_EQ(fb_engine_step(c.d, c.session, &ev, &c.env, &ns, &ef), FB_EINVAL);
    /* an offered answer's button clicked later, no offer pending: that answer, no failure; one
     * the base no longer has: « je ne sais pas », no failure either */
    fb_event_t button = {FB_EVENT_CHOICE, NULL, "kb-sis_definition", NULL};
    json_t *after = kstep_from(&c, start, &button);
    ASSERT_EQ(stat_count(&c, "kb_answered"), 1);
    ASSERT_NULL(json_object_get(after, "f"));
    json_decref(after);
    button.choice = "kb-retiree";
    after = kstep_from(&c, start, &button);
    ASSERT_EQ(stat_count(&c, "kb_unanswered"), 1);
    ASSERT_NULL(json_object_get(after, "f"));
    json_decref(after);
    /* a reminder in between: the offer is gone, the question counted unanswered */
    json_object_set_new(c.session, "i", json_pack("[s]", "sis_definition"));
    fb_event_t timer = {FB_EVENT_TIMER, NULL, NULL, "relance"};
    after = kstep_from(&c, c.session, &timer);
    ASSERT_NULL(json_object_get(after, "i"));
    ASSERT_EQ(stat_count(&c, "kb_unanswered"), 1);
    json_decref(after);
    json_decref(ns);
    json_decref(ef);
    json_decref(start);
    json_decref(c.session);
    json_decref(c.effects);
    fb_dialog_unref(c.d);
    return 0;
}

TEST_IMPL(kb_conversation)
{
    struct kconv c = {0};
    kconv_open(&c);
    kstep(&c, "bonjour");
    ASSERT_NULL(json_object_get(c.session, "w"));
    /* one failed answer: the count is 1 */
    kstep(&c, "beaucoup");
    ASSERT_EQ(json_integer_value(json_object_get(c.session, "f")), 1);
    /* a question: answered, the pending question repeated in one line, the count kept */
    kstep(&c, "c'est quoi un SIS ?");
    ASSERT_EQ(stat_count(&c, "kb_answered"), 1);
    ASSERT_STR_EQ(last_said(&c), "Quelle est la surface du site ?");
    ASSERT(json_is_true(json_object_get(c.session, "w")));
    ASSERT_EQ(json_integer_value(json_object_get(c.session, "f")), 1);
    ASSERT_STR_EQ(json_string_value(json_object_get(c.session, "s")), "surface");
    /* the question's text is not among the last messages */
    json_t *l = json_object_get(c.session, "l");
    for (size_t i = 0; i < json_array_size(l); i++)
        ASSERT_NULL(strstr(json_string_value(json_array_get(l, i)), "SIS"));
    /* feedback: counted, thanked, the flag dropped */
    kstep(&c, "Utile !");
    ASSERT_EQ(stat_count(&c, "kb_helpful"), 1);
    ASSERT_NULL(json_object_get(c.session, "w"));
    /* feedback is due right after an answer only: now "utile" is a (failed) answer, the
     * second failure escalates as before */
    kstep(&c, "utile");
    ASSERT_EQ(stat_count(&c, "kb_helpful"), 0);
    ASSERT(json_is_true(json_object_get(c.session, "x")));
    json_decref(c.session);
    json_decref(c.effects);
    fb_dialog_unref(c.d);
    return 0;
}

/* A question two answers fit about as well is not answered: the bot offers both (and a third as
 * close), so that the user picks; a sure answer, a question without any sure subject, or one
 * about the user's own case offers nothing. */
TEST_IMPL(kb_proposals)
{
    fb_kb_t *kb = fb_kb_new();
    const char *q0[] = {"Qui finance la démolition d'une friche ?", "aide pour démolir"};
    const char *q1[] = {"Qui finance la dépollution d'une friche ?", "aide pour dépolluer"};
    const char *q2[] = {"Faut-il un permis de construire ?", "autorisation de construire"};
    const char *q3[] = {"C'est quoi un EPF ?", "établissement public foncier"};
    ASSERT_EQ(fb_kb_add_doc(kb, q0, 2, NULL, 0, "Le Fonds vert finance la démolition."), 0);
    ASSERT_EQ(fb_kb_add_doc(kb, q1, 2, NULL, 0, "L'ADEME finance la dépollution."), 1);
    ASSERT_EQ(fb_kb_add_doc(kb, q2, 2, NULL, 0, "Oui, pour construire."), 2);
    ASSERT_EQ(fb_kb_add_doc(kb, q3, 2, NULL, 0, "Un organisme qui achète du foncier."), 3);
    ASSERT_OK(fb_kb_build(kb));
    fb_kb_result_t r;
    fb_kb_search(kb, "qui finance la friche ?", &r);
    ASSERT(!r.confident);
    ASSERT_EQ(r.n_proposals, 2);
    ASSERT((r.hits[0].doc == 0 && r.hits[1].doc == 1) ||
           (r.hits[0].doc == 1 && r.hits[1].doc == 0));
    /* one answer well ahead, the question half covered (norm under FB_KB_ANSWER_NORM): that
     * answer alone is offered */
    fb_kb_search(kb, "qui finance la démolition de la friche ?", &r);
    ASSERT(!r.confident);
    ASSERT(r.norm < FB_KB_ANSWER_NORM);
    ASSERT(r.margin >= FB_KB_SURE_MARGIN);
    ASSERT_EQ(r.n_proposals, 1);
    ASSERT_EQ(r.hits[0].doc, 0);
    /* sure: nothing offered */
    fb_kb_search(kb, "faut-il un permis de construire ?", &r);
    ASSERT(r.confident);
    ASSERT_EQ(r.n_proposals, 0);
    /* one known word among unknown ones: not a question of the base, nothing offered */
    fb_kb_search(kb, "recette de tarte aux pommes pour la fete de la friche du village", &r);
    ASSERT(!r.confident);
    ASSERT_EQ(r.n_proposals, 0);
    /* both close answers found only through typos: counted half, the question falls under the
     * threshold, so nothing is offered (the same rule as for a sure answer) */
    fb_kb_search(kb, "qui fiance la frcihe ?", &r);
    ASSERT(!r.confident);
    ASSERT(r.norm >= FB_KB_MIN_NORM);
    ASSERT_EQ(r.n_proposals, 0);
    /* the user's own case is never answered, nor offered */
    fb_kb_search(kb, "notre dossier pour financer la friche a-t-il été accepté ?", &r);
    ASSERT(r.own_case);
    ASSERT_EQ(r.n_proposals, 0);
    fb_kb_free(kb);
    return 0;
}
