/* SPDX-License-Identifier: MIT */
/*
 * dsfr.h - the pieces of the State's design system (DSFR) that every page the daemon writes
 * itself shares (/stats, /feuille-de-route/TOKEN): the document's start, the design system's
 * icon and stylesheet, the skip link and the header, the footer around its one sentence. String
 * literals, so that a page's head stays one static string (docs/internals/WEB.md).
 */
#ifndef FB_DSFR_H
#define FB_DSFR_H

/** The document up to the page's own <meta> and <title> (lang="fr", UTF-8, viewport). */
#define FB_DSFR_DOC_START                                                                          \
    "<!doctype html>\n<html lang=\"fr\">\n<head>\n<meta charset=\"utf-8\">\n"                      \
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"

/** The design system's icon and stylesheet (the page's own stylesheet follows). */
#define FB_DSFR_ASSETS                                                                             \
    "<link rel=\"icon\" href=\"/dsfr/favicon/favicon.svg\" type=\"image/svg+xml\">\n"              \
    "<link rel=\"stylesheet\" href=\"/dsfr/dsfr.min.css\">\n"

/** From the end of <head> to the header's end: the skip link to #contenu, the service's name. */
#define FB_DSFR_BODY_START                                                                         \
    "</head>\n<body>\n"                                                                            \
    "<div class=\"fr-skiplinks\"><nav class=\"fr-container\" role=\"navigation\" "                 \
    "aria-label=\"Accès rapide\"><ul class=\"fr-skiplinks__list\"><li><a class=\"fr-link\" "      \
    "href=\"#contenu\">Contenu</a></li></ul></nav></div>\n"                                        \
    "<header role=\"banner\" class=\"fr-header\"><div class=\"fr-header__body\"><div "             \
    "class=\"fr-container\"><div class=\"fr-header__body-row\"><div class=\"fr-header__brand "     \
    "fr-enlarge-link\"><div class=\"fr-header__brand-top\"><div class=\"fr-header__logo\"><p "     \
    "class=\"fr-logo\">République<br>Française</p></div></div><div "                             \
    "class=\"fr-header__service\"><a href=\"/\" title=\"Accueil - Assistant friches\"><p "         \
    "class=\"fr-header__service-title\">Assistant friches</p></a><p "                              \
    "class=\"fr-header__service-tagline\">Reconvertir une friche, étape par étape</p></div>"     \
    "</div></div></div></div></header>\n"

/** The end of <main> and the footer up to its sentence, which FB_DSFR_DOC_END closes. */
#define FB_DSFR_FOOT_START                                                                         \
    "</main>\n<footer class=\"fr-footer\" role=\"contentinfo\"><div class=\"fr-container\"><div "  \
    "class=\"fr-footer__body\"><div class=\"fr-footer__brand\"><p class=\"fr-logo\">République"   \
    "<br>Française</p></div><div class=\"fr-footer__content\"><p "                                \
    "class=\"fr-footer__content-desc\">"

#define FB_DSFR_DOC_END "</p></div></div></div></footer>\n</body>\n</html>\n"

#endif /* FB_DSFR_H */
