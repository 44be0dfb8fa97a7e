<?xml version="1.0" encoding="UTF-8"?>
<!-- Canonical order (json-to-xml of the shop's JSON) → the ERP's SalesOrder document. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="xml" indent="yes" encoding="UTF-8"/>
  <xsl:param name="id"/>
  <xsl:template match="/order">
    <SalesOrder reference="{$id}">
      <Customer><xsl:value-of select="customer"/></Customer>
      <Country><xsl:value-of select="country"/></Country>
      <Amount currency="EUR"><xsl:value-of select="total"/></Amount>
      <Lines>
        <xsl:for-each select="lines">
          <Line sku="{sku}" qty="{qty}"/>
        </xsl:for-each>
      </Lines>
    </SalesOrder>
  </xsl:template>
</xsl:stylesheet>
