<?xml version="1.0" encoding="UTF-8"?>
<!-- Canonical order (json-to-xml of the canonical JSON) to WidgetCo's purchase order. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:exsl="http://exslt.org/common"
    xmlns="urn:widgetco:po"
    exclude-result-prefixes="exsl">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>
  <xsl:include href="lib/money.xsl"/>

  <xsl:param name="partner" select="'UNKNOWN'"/>
  <xsl:param name="correlationid" select="''"/>

  <xsl:template match="/canonicalOrder">
    <xsl:variable name="amounts">
      <xsl:for-each select="lines">
        <a><xsl:value-of select="quantity * unitPrice"/></a>
      </xsl:for-each>
    </xsl:variable>
    <PurchaseOrder number="{orderId}" partner="{$partner}" ref="{$correlationid}">
      <Buyer id="{customer/code}"><xsl:value-of select="customer/name"/></Buyer>
      <OrderDate><xsl:value-of select="date"/></OrderDate>
      <Items count="{count(lines)}">
        <xsl:for-each select="lines">
          <Item line="{position()}" article="{sku}" quantity="{quantity}">
            <xsl:attribute name="price">
              <xsl:call-template name="money"><xsl:with-param name="v" select="unitPrice"/></xsl:call-template>
            </xsl:attribute>
          </Item>
        </xsl:for-each>
      </Items>
      <Total currency="{currency}">
        <xsl:call-template name="money">
          <xsl:with-param name="v" select="sum(exsl:node-set($amounts)/*)"/>
        </xsl:call-template>
      </Total>
    </PurchaseOrder>
  </xsl:template>
</xsl:stylesheet>
